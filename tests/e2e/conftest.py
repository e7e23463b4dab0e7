"""Fixtures of the real-pod end-to-end tests (marker ``realnode``).

They run on a real kubelet node, under ``--cluster=local`` (the default: their own
:class:`LocalCluster` with a real node beside a kwok one; root, built by ``make testenv``)
or ``--cluster=kind`` (the session's kind cluster, whose node image runs kube-router for
NetworkPolicy); :mod:`e2e_platform` holds what differs. Images come from
``make e2e-images``: a missing prerequisite is a test failure that says how to get it,
never a skip. The clean-up tests (``test_host_cleanup.py``) start and stop local real
nodes of their own, so they run before the session's node starts, and not on kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import (
    CHART,
    FIGURES,
    OPERATOR_IMAGE,
    OPERATOR_NAMESPACE,
    RELEASE,
    Helm,
    Kube,
    image_archives,
    record,
)
from e2e_platform import Platform, kind_platform, local_platform

from promethios_local.localcluster import LocalCluster, LocalClusterError, find_binaries
from promethios_local.localcluster.errors import BinariesNotFoundError

HERE = Path(__file__).resolve().parent
HOST_CLEANUP = "test_host_cleanup.py"
#: Why the clean-up tests are deselected under ``--cluster=kind`` (the terminal summary
#: reports it with their number; tests/kind checks the kind session's own clean-up).
NOT_ON_KIND = (
    f"{HOST_CLEANUP} starts and stops local real nodes (LocalCluster) itself and checks "
    "this machine after each; it is about the local node, not a kind cluster "
    "(tests/kind/test_kind_host.py checks the kind session's clean-up)"
)
DESELECTED: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real-pod tests run last (their node lives until the session ends), and among
    them the clean-up tests first: each starts and stops a node of its own. Under
    ``--cluster=kind`` the clean-up tests are deselected (see :data:`NOT_ON_KIND`)."""

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path))
        if path.parent != HERE:
            return 0
        return 1 if path.name == HOST_CLEANUP else 2

    items.sort(key=rank)  # stable: the order within each group stays
    if config.getoption("--cluster") == "kind":
        local_only = [item for item in items if rank(item) == 1]
        if local_only:
            config.hook.pytest_deselected(items=local_only)
            items[:] = [item for item in items if rank(item) != 1]
            DESELECTED.extend(item.nodeid for item in local_only)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if DESELECTED:
        terminalreporter.section("real-pod tests deselected on kind")
        terminalreporter.write_line(f"{len(DESELECTED)} deselected: {NOT_ON_KIND}")
        for nodeid in DESELECTED:
            terminalreporter.write_line(f"  {nodeid}")
    if FIGURES:
        terminalreporter.section("real-pod figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def _helm_binary() -> Path:
    try:
        helm = find_binaries().helm
    except BinariesNotFoundError as error:
        pytest.fail(str(error), pytrace=False)
    if helm is None:
        pytest.fail("helm not found beside kubectl: run `make testenv`", pytrace=False)
    return helm


def _local_platform() -> Iterator[Platform]:
    """A local cluster with one kwok node and one real node, for the whole session."""
    helm = _helm_binary()
    cluster = LocalCluster(nodes=1, real_nodes=1, image_archives=image_archives(),
                           startup_timeout=300)  # fmt: skip
    try:
        cluster.start()
    except LocalClusterError as error:
        pytest.fail(f"the real-node cluster did not start:\n{error}", pytrace=False)
    assert cluster.real_node is not None
    record("cluster + real node start-up", f"{cluster.startup_seconds:.1f} s")
    record("real node steps (s since containerd)", str(cluster.real_node.timings))
    try:
        yield local_platform(cluster, helm)
    finally:
        began = time.monotonic()
        cluster.stop()
        record("cluster stop incl. host clean-up", f"{time.monotonic() - began:.1f} s")
    if cluster.cleanup_failures:
        pytest.fail("real node clean-up failed:\n" + "\n".join(cluster.cleanup_failures))


@pytest.fixture(scope="session")
def platform(cluster_mode: str, request: pytest.FixtureRequest) -> Iterator[Platform]:
    """The real node the tests' pods run on: a local one of their own, or the kind node of
    the session's kind cluster (``cluster`` fixture; its images are loaded already)."""
    if cluster_mode == "local":
        yield from _local_platform()
    elif cluster_mode == "kind":
        handle = request.getfixturevalue("cluster")
        yield kind_platform(handle, _helm_binary(), handle.node_pids, handle.image_aliases)
    else:
        pytest.fail(
            f"the real-pod tests need a real node: --cluster=local or kind, not {cluster_mode}; "
            "deselect them with -m 'not realnode'",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kube(platform: Platform) -> Kube:
    return Kube(platform)


@pytest.fixture(scope="session")
def helm(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(platform.helm, platform.kubeconfig, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def operator_release(kube: Kube, helm: Helm, platform: Platform) -> str:
    """``helm install`` of the chart with the locally built image, steered onto the real
    node (on a local cluster) by the chart's own tolerations/nodeSelector values; returns
    the operator pod. ``--take-ownership``: on kind the cluster is the session's, where the
    cluster tests applied the CRDs from crds/ before (the local cluster is the tests' own)."""
    began = time.monotonic()
    helm(
        "install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE,
        "--create-namespace", "--take-ownership", "--wait", "--timeout", "180s",
        *platform.helm_set_json(), "--set", "image.pullPolicy=Never",
        # One node: one operator pod (the chart's default of 2 with leader election is
        # measured by tests/integration/test_operator_failover.py).
        "--set", "replicaCount=1",
    )  # fmt: skip
    pods = kube.items("pods", OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    record("helm install --wait -> operator Ready", f"{time.monotonic() - began:.1f} s")
    assert pods[0]["spec"]["containers"][0]["image"] == OPERATOR_IMAGE
    return str(pods[0]["metadata"]["name"])
