"""``RealNode``: a kubelet node that really runs containers, beside the kwok nodes.

The launcher drives it in three phases, so that the host is claimed before the API server
binds the node's bridge address and released only after everything is stopped:

1. :meth:`RealNode.claim_host` (before the control plane): take the host lock, sweep what a
   killed earlier node left, record the baseline, create the cgroup parent and the bridge;
2. :meth:`RealNode.start` (after it): containerd, images, the kubelet, kube-proxy, CoreDNS
   and kube-router; returns once the node is Ready and every add-on answers;
3. :meth:`RealNode.drain` (API server still up), then the caller stops the processes,
   then :meth:`RealNode.release_host` sweeps the machine back to its baseline.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..api import ApiError, RestClient
from ..layout import free_ports
from . import cgroups, configs, hostlock, hostnet, images, prereqs
from .rbac import addon_rbac
from .settings import (
    ADMISSION_PLUGINS,
    HOST_ADDRESS,
    NODE_NAME,
    RUN_DIR,
    NodePaths,
    NodePorts,
)
from .sweep import Baseline, sweep, sweep_leftovers

log = logging.getLogger(__name__)

CONTAINERD = "containerd"
KUBELET = "kubelet"
KUBE_PROXY = "kube-proxy"
COREDNS = "coredns"
KUBE_ROUTER = "kube-router"
#: Stop order: the add-ons and the kubelet together, containerd last.
STOP_GROUPS = [[KUBE_ROUTER, COREDNS, KUBE_PROXY, KUBELET], [CONTAINERD]]


#: The launcher's ``spawn(name, argv)``: start a component it then supervises and stops.
Spawn = Callable[[str, list[str]], None]
#: The launcher's ``wait(component, what, predicate)``: poll until true, failing early if a
#: component exits or the start-up deadline passes.
Wait = Callable[[str, str, Callable[[], bool]], None]


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        return bool(response.status == 200)


def _node_ready(api: RestClient) -> bool:
    try:
        node = api.get(f"/api/v1/nodes/{NODE_NAME}")
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _chain_exists(chain: str) -> bool:
    argv = ["iptables", "-w", "-t", "filter", "-S", chain]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


class RealNode:
    """One real node (see the module docstring); ``timings`` records each start-up step."""

    def __init__(
        self,
        bin_dir: Path,
        node_root: Path,
        image_archives: Sequence[Path] = (),
        lock_timeout: float = hostlock.DEFAULT_WAIT,
    ) -> None:
        self.bin_dir = bin_dir
        self.paths = NodePaths(node_root)
        self.image_archives = [Path(a) for a in image_archives]
        self.lock_timeout = lock_timeout
        self.timings: dict[str, float] = {}
        self.cleanup_failures: list[str] = []
        self._binaries: prereqs.NodeBinaries | None = None
        self._baseline: Baseline | None = None
        self._ports: NodePorts | None = None

    @property
    def name(self) -> str:
        return NODE_NAME

    @property
    def ports(self) -> NodePorts:
        if self._ports is None:
            raise RuntimeError("the real node has not claimed the host")
        return self._ports

    # ----------------------------------------------------------------- phase 1

    def claim_host(self) -> None:
        """Check prerequisites, lock, sweep leftovers, record the baseline, make the bridge."""
        self._binaries = prereqs.check(self.bin_dir, self.image_archives)
        hostlock.acquire(self.lock_timeout)
        try:
            failures = sweep_leftovers()
            if failures:
                raise prereqs.RealNodePrerequisiteError(
                    "an earlier real node left things that could not be removed:\n  "
                    + "\n  ".join(failures)
                )
            RUN_DIR.mkdir(mode=0o700)
            self._baseline = Baseline.capture(self.paths.root)
            self._baseline.save(self.paths.baseline)
            self._baseline.bridge_nf_previous = hostnet.ensure_bridge_netfilter()
            self._baseline.save(self.paths.baseline)
            cgroups.create()
            hostnet.create_bridge()
        except BaseException:
            self.release_host()
            raise
        kubelet_port, *loopback = free_ports(1, HOST_ADDRESS) + free_ports(4)
        self._ports = NodePorts(kubelet_port, *loopback)

    @staticmethod
    def apiserver_args(pki: Callable[[str], Path]) -> list[str]:
        """API server flags a real node needs: a client certificate for the kubelet API
        (logs, exec, port-forward) and the admission plugins that read the namespace
        annotations steering pods onto the node (:func:`.settings.steering_annotations`)."""
        return [
            f"--kubelet-client-certificate={pki('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={pki('apiserver-kubelet-client.key')}",
            # The node's name resolves nowhere; its InternalIP is the bridge address.
            "--kubelet-preferred-address-types=InternalIP",
            f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
        ]

    # ----------------------------------------------------------------- phase 2

    def write_files(self, ca_file: Path, kubeconfigs: dict[str, Path]) -> None:
        """Every configuration file the components read."""
        paths, ports = self.paths, self.ports
        for directory in paths.directories():
            directory.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(configs.containerd_config(paths))
        (paths.cni_conf_dir / "10-promethios.conflist").write_text(
            json.dumps(configs.cni_config(paths), indent=2)
        )
        paths.resolv_conf.write_text("")
        paths.kubelet_config.write_text(json.dumps(configs.kubelet_config(paths, ports, ca_file)))
        paths.proxy_config.write_text(
            json.dumps(configs.kube_proxy_config(ports, kubeconfigs["kube-proxy"]))
        )
        paths.corefile.write_text(configs.corefile(kubeconfigs["coredns"], ports.dns_ready))

    def start(
        self,
        spawn: Spawn,
        wait: Wait,
        api: RestClient,
        ca_file: Path,
        kubeconfigs: dict[str, Path],
    ) -> None:
        """Start every component in order and wait until the node can run pods."""
        assert self._binaries is not None, "claim_host() first"
        bins, paths = self._binaries, self.paths
        self.write_files(ca_file, kubeconfigs)
        began = time.monotonic()
        spawn(CONTAINERD, [str(bins.containerd), "--config", str(paths.containerd_config)])
        wait(CONTAINERD, "its socket answering", self._containerd_answers)
        self._step("containerd", began)
        self._import_sandbox()
        # The other images load while the kubelet and the add-ons start (none needs them);
        # one after the other: they share layers, which containerd then unpacks once.
        with ThreadPoolExecutor(max_workers=1) as pool:
            imports = pool.submit(self._import_all)
            self._start_node(spawn, wait, api, kubeconfigs, began)
            imports.result()
        self._step("images imported", began)

    def _start_node(
        self, spawn: Spawn, wait: Wait, api: RestClient, kubeconfigs: dict[str, Path], began: float
    ) -> None:
        assert self._binaries is not None
        bins, paths, ports = self._binaries, self.paths, self.ports
        for manifest in addon_rbac():
            self._create(api, manifest)
        spawn(KUBELET, configs.kubelet_command(bins.kubelet, paths, kubeconfigs["kubelet"]))
        wait(KUBELET, f"node {NODE_NAME} Ready", lambda: _node_ready(api))
        self._step("kubelet Ready", began)
        spawn(KUBE_PROXY, configs.kube_proxy_command(bins.kube_proxy, paths.proxy_config))
        spawn(COREDNS, configs.coredns_command(bins.coredns, paths.corefile))
        spawn(
            KUBE_ROUTER, configs.kube_router_command(bins.kube_router, kubeconfigs["kube-router"])
        )
        wait(
            KUBE_PROXY,
            "/healthz answering 200",
            lambda: _http_ok(f"http://127.0.0.1:{ports.proxy_healthz}/healthz"),
        )
        wait(
            COREDNS,
            "/ready answering 200",
            lambda: _http_ok(f"http://127.0.0.1:{ports.dns_ready}/ready"),
        )
        wait(
            KUBE_ROUTER,
            "its KUBE-ROUTER-FORWARD chain",
            lambda: _chain_exists("KUBE-ROUTER-FORWARD"),
        )
        self._step("add-ons ready", began)

    def _step(self, what: str, began: float) -> None:
        self.timings[what] = round(time.monotonic() - began, 2)
        log.info("real node: %s after %.1f s", what, self.timings[what])

    def _containerd_answers(self) -> bool:
        if not self.paths.containerd_socket.exists():
            return False
        argv = ["ctr", "--address", str(self.paths.containerd_socket), "version"]
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    def _import_sandbox(self) -> None:
        sandbox = self.paths.images_dir / "sandbox.tar"
        sandbox.write_bytes(images.sandbox_archive(images.find_busybox()))
        images.import_archive(self.paths.containerd_socket, sandbox)

    def _import_all(self) -> None:
        for archive in self.image_archives:
            began = time.monotonic()
            images.import_archive(self.paths.containerd_socket, archive)
            self.timings[f"import {archive.name}"] = round(time.monotonic() - began, 2)

    @staticmethod
    def _create(api: RestClient, manifest: dict[str, Any]) -> None:
        kind = manifest["kind"].lower() + "s"
        try:
            api.post(f"/apis/rbac.authorization.k8s.io/v1/{kind}", manifest)
        except ApiError as error:
            if error.status != 409:
                raise

    # ----------------------------------------------------------------- phase 3

    def drain(self, api: RestClient | None, timeout: float = 30.0) -> None:
        """Cordon the node, delete its pods and wait until the runtime runs no container.

        Best effort: whatever is still running afterwards is killed by the sweep.
        """
        if api is None or self._ports is None:
            return
        began = time.monotonic()
        deadline = began + timeout
        try:
            api.patch(f"/api/v1/nodes/{NODE_NAME}", {"spec": {"unschedulable": True}})
            pods = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")["items"]
            for pod in pods:
                meta = pod["metadata"]
                api.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {"gracePeriodSeconds": 1},
                )
            while time.monotonic() < deadline and (self._node_has_pods(api) or self._tasks()):
                time.sleep(0.3)
        except (OSError, ApiError) as error:
            log.warning("real node: drain incomplete (%s); the sweep removes the rest", error)
        log.info("real node: drained in %.1f s", time.monotonic() - began)

    @staticmethod
    def _node_has_pods(api: RestClient) -> bool:
        pods = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")["items"]
        return bool(pods)

    def _tasks(self) -> list[str]:
        """Running containerd tasks (containers and sandboxes); stopped ones wait for the
        kubelet's garbage collection, which the sweep makes unnecessary."""
        argv = ["ctr", "--address", str(self.paths.containerd_socket), "-n", "k8s.io",
                "tasks", "ls"]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            return []
        rows = [line.split() for line in result.stdout.splitlines()[1:]]
        return [row[0] for row in rows if len(row) >= 3 and row[2] == "RUNNING"]

    def release_host(self) -> list[str]:
        """Sweep the machine back to the baseline and release the lock; return failures."""
        began = time.monotonic()
        try:
            if self._baseline is not None:
                self.cleanup_failures = sweep(self._baseline)
                log.info("real node: host swept in %.1f s", time.monotonic() - began)
                self._baseline = None
            elif hostlock.held():
                self.cleanup_failures = sweep_leftovers()  # failed before the baseline
        finally:
            hostlock.release()
        return self.cleanup_failures
