"""Fixtures of the real-pod end-to-end tests (marker ``realnode``).

They run against their own :class:`LocalCluster` with a real kubelet node (root, built by
``make testenv``; images by ``make e2e-images``): a missing prerequisite is a test failure
that says how to get it, never a skip. The clean-up tests (``test_host_cleanup.py``) start
and stop nodes of their own, so they run before the session's node starts.
"""

from __future__ import annotations

import json
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

from promethios_local.localcluster import LocalCluster, LocalClusterError, find_binaries
from promethios_local.localcluster.errors import BinariesNotFoundError
from promethios_local.localcluster.realnode import NODE_LABEL, toleration

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real-pod tests run last (their node lives until the session ends), and among
    them the clean-up tests first: each starts and stops a node of its own."""

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path))
        if path.parent != HERE:
            return 0
        return 1 if path.name == "test_host_cleanup.py" else 2

    items.sort(key=rank)  # stable: the order within each group stays


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("real-pod figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def real_cluster(cluster_mode: str) -> Iterator[LocalCluster]:
    """A local cluster with one kwok node and one real node, for the whole session."""
    if cluster_mode != "local":
        pytest.fail(
            "the real-pod tests start their own local cluster with a real node and need "
            "--cluster=local; deselect them with -m 'not realnode'",
            pytrace=False,
        )
    try:
        find_binaries()
    except BinariesNotFoundError as error:
        pytest.fail(str(error), pytrace=False)
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
        yield cluster
    finally:
        began = time.monotonic()
        cluster.stop()
        record("cluster stop incl. host clean-up", f"{time.monotonic() - began:.1f} s")
    if cluster.cleanup_failures:
        pytest.fail("real node clean-up failed:\n" + "\n".join(cluster.cleanup_failures))


@pytest.fixture(scope="session")
def kube(real_cluster: LocalCluster) -> Kube:
    return Kube(real_cluster)


@pytest.fixture(scope="session")
def helm(real_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    helm_path = real_cluster.binaries.helm
    if helm_path is None:
        pytest.fail("helm not found beside kubectl: run `make testenv`", pytrace=False)
    return Helm(helm_path, real_cluster.kubeconfig, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def operator_release(kube: Kube, helm: Helm) -> str:
    """``helm install`` of the chart with the locally built image, steered onto the real
    node by the chart's own tolerations/nodeSelector values; returns the operator pod."""
    began = time.monotonic()
    helm(
        "install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE,
        "--create-namespace", "--wait", "--timeout", "180s",
        "--set-json", f"tolerations={json.dumps([toleration()])}",
        "--set-json", f"nodeSelector={json.dumps({NODE_LABEL: 'true'})}",
        "--set", "image.pullPolicy=Never",
        # One real node: one operator pod (the chart's default of 2 with leader election
        # is measured by tests/integration/test_operator_failover.py).
        "--set", "replicaCount=1",
    )  # fmt: skip
    pods = kube.items("pods", OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    record("helm install --wait -> operator Ready", f"{time.monotonic() - began:.1f} s")
    assert pods[0]["spec"]["containers"][0]["image"] == OPERATOR_IMAGE
    return str(pods[0]["metadata"]["name"])
