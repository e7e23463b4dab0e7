"""``LocalCluster``: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok fake nodes, started as child processes on loopback ports, stopped without orphans.

    with LocalCluster(nodes=2) as cluster:
        cluster.kubectl("get", "nodes")
        print(cluster.kubeconfig, cluster.startup_seconds)
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
import urllib.error
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .api import ApiError, RestClient
from .binaries import Binaries, find_binaries
from .commands import (
    apiserver_command,
    audit_log_path,
    audit_policy_path,
    controller_manager_command,
    etcd_command,
    kwok_command,
    scheduler_command,
)
from .errors import ComponentError, LocalClusterError
from .layout import LOOPBACK, Layout, Ports, allocate_ports
from .manifests import KWOK_NODE_LABEL, audit_policy, node_manifest, node_name, render_yaml
from .process import (
    DEFAULT_STOP_TIMEOUT,
    ManagedProcess,
    install_sigterm_handler,
    stop_processes,
)
from .readiness import (
    KubectlError,
    NotReadyYet,
    default_service_account_exists,
    describe_node,
    etcd_healthy,
    node_is_ready,
    node_is_usable,
)
from .realnode import HOST_ADDRESS, NODE_NAME, RealNode, default_archive_dir
from .realnode.node import STOP_GROUPS as REAL_NODE_STOP_GROUPS
from .realnode.rbac import node_identities
from .workdir import prepare_workdir, remove_workdir, server_url

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KWOK = "kwok"


class LocalCluster:
    """A throw-away Kubernetes control plane with kwok-simulated nodes.

    Parameters:
        nodes: how many fake nodes to create (and wait to be Ready).
        binaries: where the executables are; default :func:`find_binaries`.
        workdir: directory for certificates, kubeconfigs, data and logs; default a new
            temporary directory, deleted on :meth:`stop` unless ``keep_workdir``.
        startup_timeout: seconds the whole start-up may take before it is abandoned.
        stop_timeout: seconds each shutdown step waits after SIGTERM before SIGKILL.
        audit_log: run the API server with an audit log of every request (level
            Metadata, JSON lines at :attr:`audit_log_path`), e.g. to count requests
            per client in benchmarks.
        real_nodes: 0, or 1 for a real kubelet node (:mod:`.realnode`, root only) that
            runs the pods tolerating its taint; the API server then listens on the node's
            bridge address, reachable from pods.
        image_archives: image archives the real node imports (default: every ``*.tar``
            that ``make image`` wrote to the image cache).
        controllers: the controller manager's ``--controllers`` (default every default
            one; e.g. ``*,-deployment,-replicaset`` for a benchmark of the objects alone).
    """

    def __init__(
        self,
        *,
        nodes: int = 2,
        binaries: Binaries | None = None,
        workdir: Path | str | None = None,
        keep_workdir: bool = False,
        startup_timeout: float = 120.0,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        audit_log: bool = False,
        real_nodes: int = 0,
        image_archives: Sequence[Path | str] | None = None,
        controllers: str = "*",
    ) -> None:
        if nodes < 0:
            raise ValueError("nodes must be >= 0")
        if real_nodes not in (0, 1):
            raise ValueError("real_nodes must be 0 or 1 (one real node per machine)")
        self.real_nodes = real_nodes
        self.controllers = controllers
        self._image_archives = image_archives
        self.real_node: RealNode | None = None
        self.cleanup_failures: list[str] = []
        self.binaries = binaries or find_binaries()
        self.nodes = nodes
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.audit_log = audit_log
        self._given_workdir = Path(workdir) if workdir is not None else None
        self._keep_workdir = keep_workdir or workdir is not None
        self._processes: dict[str, ManagedProcess] = {}
        self._layout: Layout | None = None
        self._ports: Ports | None = None
        self._client: RestClient | None = None
        self._deadline = 0.0
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- properties

    @property
    def bin_dir(self) -> Path:
        """The directory holding kwok, kube-* and (when built) helm."""
        return self.binaries.bin_dir

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            raise LocalClusterError("the cluster has not been started")
        return self._layout

    @property
    def workdir(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user ``kubernetes-admin`` in ``system:masters``)."""
        return self.layout.admin_kubeconfig

    @property
    def log_dir(self) -> Path:
        return self.layout.log_dir

    @property
    def audit_log_path(self) -> Path | None:
        """The API server's audit log (JSON lines); None unless ``audit_log`` was set."""
        return audit_log_path(self.layout) if self.audit_log else None

    @property
    def server(self) -> str:
        if self._ports is None:
            raise LocalClusterError("the cluster has not been started")
        return server_url(self._ports)

    @property
    def node_names(self) -> list[str]:
        return [node_name(i) for i in range(self.nodes)]

    def pids(self) -> dict[str, int]:
        """The process id of every component started (running or not)."""
        return {name: p.pid for name, p in self._processes.items() if p.pid is not None}

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        """Start every component and wait until the cluster can run pods.

        On failure everything started is stopped and :class:`ComponentError` (with the
        failing component's log tail) is raised; the logs stay in :attr:`log_dir`.
        Call from a long-lived thread (normally the main one): on Linux the components
        are killed when the thread that started them ends (``PR_SET_PDEATHSIG``).
        """
        if self._processes:
            raise LocalClusterError("the cluster is already started")
        install_sigterm_handler()
        began = time.monotonic()
        self._deadline = began + self.startup_timeout
        try:
            self._prepare()
            self._start_control_plane()
            self._start_node_side()
        except BaseException:
            self._stop(keep_logs=True)
            raise
        self.startup_seconds = time.monotonic() - began
        log.info(
            "local cluster ready in %.1f s: %s (KUBECONFIG=%s)",
            self.startup_seconds,
            self.server,
            self.kubeconfig,
        )
        return self

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL) and remove the temporary workdir.

        Idempotent; safe after a failed or partial start.
        """
        self._stop(keep_logs=False)

    def _stop(self, keep_logs: bool) -> None:
        groups = [[KWOK, SCHEDULER, CONTROLLER_MANAGER], [APISERVER], [ETCD]]
        if self.real_node is not None:
            api_up = APISERVER in self._processes and self._processes[APISERVER].running()
            self.real_node.drain(self._client if api_up else None)
            groups = [*REAL_NODE_STOP_GROUPS, *groups]
        for group in groups:
            members = [self._processes[n] for n in group if n in self._processes]
            stop_processes(members, self.stop_timeout)
        self._processes.clear()
        self._client = None
        if self.real_node is not None:
            # Unmounts too: only then may the workdir below be deleted.
            self.cleanup_failures = self.real_node.release_host()
            self.real_node = None
        if self._layout is not None and not self._keep_workdir:
            remove_workdir(self._layout, keep_logs)

    def check_running(self) -> None:
        """Raise :class:`ComponentError` if any component has exited."""
        for process in self._processes.values():
            code = process.exit_code()
            if code is not None:
                raise ComponentError(
                    process.name, f"exited with code {code}", process.log_path, process.log_tail()
                )

    def restart(self, component: str) -> float:
        """Kill one component (SIGKILL, as a crash) and start it again with the same command
        line: data dir, ports and certificates. Returns the seconds until it answers again
        (etcd healthy, the API server ready; any other component: running)."""
        process, began = self._processes[component], time.monotonic()
        process.kill()
        process.start()
        self._deadline = time.monotonic() + self.startup_timeout
        answers = {ETCD: self._etcd_healthy, APISERVER: self._apiserver_ready}
        self._wait(component, "answering again", answers.get(component, process.running))
        return time.monotonic() - began

    # ----------------------------------------------------------------- helpers

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --kubeconfig=<admin> *args``; text output is captured."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    # ----------------------------------------------------------------- start-up steps

    def _prepare(self) -> None:
        root = self._given_workdir or Path(tempfile.mkdtemp(prefix="promethios-cluster-"))
        self._layout = Layout(root.absolute())
        host, identities = LOOPBACK, None
        if self.real_nodes:
            archives = self._image_archives
            if archives is None:
                archives = sorted(default_archive_dir().glob("*.tar"))
            self.real_node = RealNode(
                self.bin_dir, self._layout.node_dir, [Path(a) for a in archives]
            )
            self.real_node.claim_host()
            host, identities = HOST_ADDRESS, node_identities(self.real_node.name)
        self._ports = allocate_ports(host)
        prepare_workdir(self._layout, self._ports, identities)
        layout = self._layout
        if self.audit_log:
            audit_policy_path(layout).write_text(render_yaml(audit_policy()))
        self._client = RestClient(
            self.server, layout.pki("ca.crt"), layout.pki("admin.crt"), layout.pki("admin.key")
        )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        process = ManagedProcess(name, argv, self.layout.log(name), env)
        self._processes[name] = process
        process.start()

    def _start_control_plane(self) -> None:
        assert self._ports is not None
        bins, layout, ports = self.binaries, self.layout, self._ports
        self._spawn(ETCD, etcd_command(bins.etcd, layout, ports))
        extra = RealNode.apiserver_args(layout.pki) if self.real_node is not None else []
        self._spawn(
            APISERVER,
            apiserver_command(
                bins.kube_apiserver, layout, ports, audit=self.audit_log, extra_args=extra
            ),
        )
        self._wait(ETCD, "/health answering true", self._etcd_healthy)
        self._wait(APISERVER, "/readyz answering ok", self._apiserver_ready)

    def _start_node_side(self) -> None:
        bins, layout = self.binaries, self.layout
        self._spawn(
            CONTROLLER_MANAGER,
            controller_manager_command(bins.kube_controller_manager, layout, self.controllers),
        )
        self._spawn(SCHEDULER, scheduler_command(bins.kube_scheduler, layout))
        kwok_env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        kwok_env["HOME"] = str(layout.kwok_home)
        self._spawn(KWOK, kwok_command(bins.kwok, layout), kwok_env)
        for index in range(self.nodes):
            self._api().post("/api/v1/nodes", node_manifest(index))
        self._wait(
            CONTROLLER_MANAGER,
            "ServiceAccount default/default created",
            self._default_service_account_exists,
        )
        if self.nodes:
            # kwok makes the nodes Ready; the node lifecycle controller then lifts the
            # not-ready taint that admission put on them at creation.
            self._wait(
                KWOK, f"{self.nodes} kwok node(s) Ready", lambda: self._nodes_satisfy(node_is_ready)
            )
            self._wait(
                CONTROLLER_MANAGER,
                "the not-ready taint lifted from the kwok nodes",
                lambda: self._nodes_satisfy(node_is_usable),
            )
        if self.real_node is not None:
            kubeconfigs = {name: layout.kubeconfig(name) for name in node_identities(NODE_NAME)}
            self.real_node.start(
                self._spawn, self._wait, self._api(), layout.pki("ca.crt"), kubeconfigs
            )

    # ----------------------------------------------------------------- readiness

    def _api(self) -> RestClient:
        if self._client is None:
            raise LocalClusterError("the cluster has not been started")
        return self._client

    def _wait(self, component: str, what: str, predicate: Callable[[], bool]) -> None:
        """Poll ``predicate`` until true; fail fast if any component exits meanwhile."""
        last_error = ""
        began = time.monotonic()
        while True:
            self.check_running()
            try:
                if predicate():
                    log.debug("%s: %s after %.2f s", component, what, time.monotonic() - began)
                    return
            except NotReadyYet as state:
                last_error = f"; last state: {state}"
            except (OSError, ApiError, urllib.error.URLError) as error:
                last_error = f"; last error: {error}"
            if time.monotonic() > self._deadline:
                process = self._processes[component]
                raise ComponentError(
                    component,
                    f"did not become ready within {self.startup_timeout:.0f} s "
                    f"(waiting for {what}{last_error})",
                    process.log_path,
                    process.log_tail(),
                )
            time.sleep(POLL_INTERVAL)

    def _etcd_healthy(self) -> bool:
        assert self._ports is not None
        return etcd_healthy(f"http://{LOOPBACK}:{self._ports.etcd_client}/health")

    def _apiserver_ready(self) -> bool:
        return bool(self._api().get("/readyz") == "ok")

    def _default_service_account_exists(self) -> bool:
        return default_service_account_exists(self._api())

    def _nodes_satisfy(self, condition: Callable[[dict[str, Any]], bool]) -> bool:
        selector = ",".join(f"{k}={v}" for k, v in KWOK_NODE_LABEL.items())
        items = self._api().get(f"/api/v1/nodes?labelSelector={selector}")["items"]
        passing = {item["metadata"]["name"] for item in items if condition(item)}
        if set(self.node_names) <= passing:
            return True
        raise NotReadyYet("; ".join(describe_node(item) for item in items) or "no nodes")
