"""Pytest wiring: markers by directory, and the cluster the ``cluster`` tests run against.

``--cluster`` chooses the cluster (default ``local``, or ``$PROMETHIOS_TEST_CLUSTER``):

- ``local``: the embedded control plane (:class:`promethios_local.localcluster.LocalCluster`),
  started once per session, and only if a collected test asks for it. Missing binaries
  are a test *failure* telling you to run ``make testenv``: never a silent skip.
- ``existing``: whatever the current ``KUBECONFIG`` context points at.
- ``kind``: a throw-away kind cluster via pytest-kind, on a Docker daemon the session starts
  and the node image ``make kind-image`` builds (root; see ``promethios_local.kind``).

Fixtures: ``cluster`` (``.kubeconfig``, ``.kubectl(*args, check=True, input=None)``),
``cluster_mode``, ``api_client`` (a ``kubernetes.client.ApiClient``) and ``namespace``
(a fresh namespace per test, deleted afterwards).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from promethios_local.localcluster import (
    BinariesNotFoundError,
    KubectlError,
    LocalCluster,
    find_binaries,
)

CLUSTER_MODES = ("local", "existing", "kind")
TESTS_DIR = Path(__file__).parent
DIRECTORY_MARKERS = {
    "integration": "cluster",
    "unit": "unit",
    "adversarial": "adversarial",
    "e2e": "realnode",
    "kind": "kind",
    "chaos": "chaos",
}


class ClusterHandle(Protocol):
    """What tests may rely on, whichever cluster they run against."""

    @property
    def kubeconfig(self) -> Path: ...

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


class KubeconfigCluster:
    """A cluster known only by a kubeconfig file (``existing`` and ``kind`` modes)."""

    def __init__(self, kubeconfig: Path, kubectl_path: Path) -> None:
        self._kubeconfig = kubeconfig
        self.kubectl_path = kubectl_path

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl_path), f"--kubeconfig={self._kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result


class KindClusterHandle(KubeconfigCluster):
    """A kind cluster: also its node containers' init PIDs, by node name, so that tests can
    act in a node's network namespace (``nsenter -t PID -n``) like on a local real node,
    and the other names each loaded image carries (:data:`KIND_IMAGE_ALIASES`): the
    runtime may report any of them as a container's image."""

    def __init__(
        self,
        kubeconfig: Path,
        kubectl_path: Path,
        node_pids: dict[str, int],
        image_aliases: dict[str, tuple[str, ...]],
    ) -> None:
        super().__init__(kubeconfig, kubectl_path)
        self.node_pids = node_pids
        self.image_aliases = image_aliases


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=CLUSTER_MODES,
        default=os.environ.get("PROMETHIOS_TEST_CLUSTER", "local"),
        help="cluster for `cluster` tests: local (embedded control plane, default), "
        "existing (current KUBECONFIG context) or kind (pytest-kind on its own dockerd, root)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by directory (see :data:`DIRECTORY_MARKERS`): integration, unit,
    adversarial, e2e (``realnode``), chaos."""
    for item in items:
        try:
            relative = Path(str(item.path)).resolve().relative_to(TESTS_DIR.resolve())
        except ValueError:
            continue
        marker = DIRECTORY_MARKERS.get(relative.parts[0]) if relative.parts else None
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
    _kind_tests_only_with_kind(config, items)


def _kind_tests_only_with_kind(config: pytest.Config, items: list[pytest.Item]) -> None:
    """tests/kind starts a Docker daemon and a kind cluster of its own: it belongs to
    ``--cluster=kind`` runs (``make test-kind``) only, where it runs first (before the
    session's kind cluster starts); other runs deselect it (reported as deselected)."""
    is_kind = [item for item in items if item.get_closest_marker("kind")]
    if config.getoption("--cluster") != "kind":
        if is_kind:
            config.hook.pytest_deselected(items=is_kind)
            items[:] = [item for item in items if not item.get_closest_marker("kind")]
        return
    items[:] = is_kind + [item for item in items if not item.get_closest_marker("kind")]


@pytest.fixture(scope="session")
def cluster_mode(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--cluster"))


def _local_cluster() -> Iterator[LocalCluster]:
    try:
        binaries = find_binaries()
    except BinariesNotFoundError as error:
        pytest.fail(str(error), pytrace=False)
    with LocalCluster(binaries=binaries) as local:
        print(f"\nlocal cluster up in {local.startup_seconds:.1f} s ({local.server})")
        yield local


def _kubectl_on_path() -> Path:
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    try:
        return find_binaries().kubectl
    except BinariesNotFoundError as error:
        pytest.fail(
            f"--cluster=existing needs kubectl on PATH or the testenv:\n{error}", pytrace=False
        )


def _existing_cluster() -> Iterator[KubeconfigCluster]:
    paths = os.environ.get("KUBECONFIG", "").split(os.pathsep)
    kubeconfig = Path(paths[0] if paths[0] else "~/.kube/config").expanduser()
    if not kubeconfig.is_file():
        pytest.fail(
            f"--cluster=existing: no kubeconfig at {kubeconfig} (set KUBECONFIG)", pytrace=False
        )
    yield KubeconfigCluster(kubeconfig, _kubectl_on_path())


#: What ``make e2e-images`` builds, loaded into every kind cluster (pods there really run).
KIND_IMAGES = {
    "promethios-operator.tar": "ghcr.io/promethios/promethios-operator:0.1.0",
    "promethios-e2e.tar": "localhost/promethios/e2e:1",
}
#: On kind, pods run for real and nothing can be pulled: the placeholder images the
#: cluster tests and the sample manifests name (kwok never runs them) are tags of the e2e
#: agent image (it serves ``GET /healthz`` on ``$PORT``, 8080 by default) or, for the
#: custom sidecar, of the project's image.
KIND_IMAGE_ALIASES = {
    "localhost/promethios/e2e:1": (
        "registry.example/agent:1", "registry.example/bot:1", "registry.example/bot:2",
        "registry.example/bot:3", "registry.example/bot:4", "registry.example/support-bot:1.0",
        "example.com/agent:1", "example.com/agent:2", "example.com/a:2",
        "registry.example.com/agent:1.0", "x.io/y:1", "registry.k8s.io/pause:3.10",
        "registry.example.com/support-bot:1.0",  # manifests/samples/04-governedagent.yaml
    ),
    "ghcr.io/promethios/promethios-operator:0.1.0": ("registry.example.com/custom-sidecar:1",),
}  # fmt: skip


def _kind_node_pids(session: Any, cluster_name: str) -> dict[str, int]:
    """The init PID of each node container of the cluster (a node's name is its container's)."""
    names = session.daemon.docker(
        "ps", "--filter", f"label=io.x-k8s.kind.cluster={cluster_name}", "--format", "{{.Names}}"
    ).stdout.split()
    return {
        name: int(session.daemon.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
        for name in names
    }


def _kind_cluster() -> Iterator[KubeconfigCluster]:
    """A kind cluster on the session's own Docker daemon and the node image built here
    (``make kind-image``); the machine is restored when the session ends."""
    import time

    from pytest_kind import KindCluster

    from promethios_local.kind import KindSession
    from promethios_local.localcluster.realnode import default_archive_dir

    try:
        kubectl = find_binaries().kubectl
    except BinariesNotFoundError as error:
        pytest.fail(str(error), pytrace=False)
    archives = {default_archive_dir() / name: ref for name, ref in KIND_IMAGES.items()}
    missing = [str(a) for a in archives if not a.is_file()]
    if missing:
        pytest.fail(f"image archives missing: {missing}; run `make e2e-images`", pytrace=False)
    with KindSession() as session:
        saved_env = dict(os.environ)
        os.environ.update(session.daemon.env)  # pytest-kind runs kind and kubectl itself
        try:
            kind = KindCluster(f"promethios-{uuid.uuid4().hex[:6]}", image=session.image,
                               kind_path=session.kind, kubectl_path=kubectl)  # fmt: skip
            began = time.monotonic()
            kind.create()
            print(f"\nkind cluster up in {time.monotonic() - began:.1f} s "
                  f"(node image load {session.load_seconds:.1f} s)")  # fmt: skip
            try:
                began = time.monotonic()
                for archive, ref in archives.items():
                    session.load_archive(archive)
                    kind.load_docker_image(ref)
                    for alias in KIND_IMAGE_ALIASES.get(ref, ()):
                        session.daemon.docker("tag", ref, alias)
                        kind.load_docker_image(alias)
                print(f"images loaded in {time.monotonic() - began:.1f} s")
                yield KindClusterHandle(Path(kind.kubeconfig_path), kubectl,
                                        _kind_node_pids(session, kind.name),
                                        KIND_IMAGE_ALIASES)  # fmt: skip
            finally:
                kind.delete()
        finally:
            os.environ.clear()
            os.environ.update(saved_env)


@pytest.fixture(scope="session")
def cluster(cluster_mode: str) -> Iterator[ClusterHandle]:
    """The session's cluster; started on first use only."""
    factories = {"local": _local_cluster, "existing": _existing_cluster, "kind": _kind_cluster}
    yield from factories[cluster_mode]()


@pytest.fixture(scope="session")
def api_client(cluster: ClusterHandle) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the session's cluster."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(api_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A uniquely named namespace for one test, deleted (not awaited) afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"promethios.ai/test": "true"})
        )
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise
