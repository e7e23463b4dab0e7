"""Names, addresses and paths of the real node: everything it adds to the machine is named here.

One real node runs per machine at a time (:mod:`.hostlock`), so its host-level names are
fixed: that is what lets a later start recognise and remove what a killed one left behind.

- network: the bridge ``promethios0`` holds the host's address ``10.246.0.1/24``, which is
  also the node IP, the API server's and cluster DNS's address; pods get addresses from the
  same /24 (kwok's fake pods use 10.244.0.0/16) and routes to that /24 and the Service range
  only, never a default route;
- cgroups: everything the kubelet and runc create lives under ``/promethios-realnode`` in
  every cgroup hierarchy;
- runtime state, sockets and the clean-up baseline live in ``/run/promethios-realnode``; data
  (containerd's root, the kubelet's root, logs) in the cluster's workdir.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "promethios-real-0"
BRIDGE = "promethios0"
NODE_SUBNET = ipaddress.IPv4Network("10.246.0.0/24")
HOST_ADDRESS = "10.246.0.1"  # on the bridge: node IP, API server, cluster DNS
POD_RANGE_START = "10.246.0.16"
POD_RANGE_END = "10.246.0.254"
CLUSTER_DOMAIN = "cluster.local"
CGROUP_PARENT = "promethios-realnode"
RUN_DIR = Path("/run/promethios-realnode")
CNI_NETWORK = "promethios"

#: Only pods that tolerate this taint land on the real node; the label selects it.
TAINT_KEY = "promethios.ai/real-node"
NODE_LABEL = "promethios.ai/real-node"
NODE_LABEL_VALUE = "true"

#: Namespace annotations that steer every pod of a namespace onto the real node, read by
#: the PodNodeSelector and PodTolerationRestriction admission plugins (enabled with a
#: real node).
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
DEFAULT_TOLERATIONS_ANNOTATION = "scheduler.alpha.kubernetes.io/defaultTolerations"
ADMISSION_PLUGINS = ("PodNodeSelector", "PodTolerationRestriction")

#: Paths the kubelet, containerd and the CNI library use whatever they are told; removed
#: on stop when they did not exist before the node started.
FIXED_HOST_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/var/lib/cni"),
    Path("/var/lib/cni/results"),
    Path("/run/netns"),
    Path("/run/containerd"),
    Path("/run/containerd/s"),
    Path("/etc/cni"),
    Path("/opt/cni"),
    Path("/opt/containerd"),
    Path("/var/lib/kube-router"),
    Path("/var/run/kube-router"),
)

#: The sandbox ("pause") image, built from the static busybox at node start.
SANDBOX_IMAGE = "localhost/promethios/pause:1"


def toleration() -> dict[str, str]:
    """The toleration a pod needs to land on the real node."""
    return {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


def steering_annotations() -> dict[str, str]:
    """Annotations that put every pod of a namespace on the real node (see above)."""
    return {
        NODE_SELECTOR_ANNOTATION: f"{NODE_LABEL}={NODE_LABEL_VALUE}",
        DEFAULT_TOLERATIONS_ANNOTATION: json.dumps([toleration()]),
    }


@dataclass(frozen=True)
class NodePorts:
    """TCP ports of the node's components (kubelet on the node IP, the rest on loopback)."""

    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    dns_ready: int


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its files: data under the workdir, runtime state under /run."""

    root: Path  # <cluster workdir>/node
    run: Path = RUN_DIR

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.run / "runc"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_certs(self) -> Path:
        return self.root / "kubelet-pki"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def resolv_conf(self) -> Path:
        """An empty file: pods get only the cluster DNS, never the host's resolvers."""
        return self.root / "resolv.conf"

    @property
    def proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def baseline(self) -> Path:
        """The host state before the node started (see :mod:`.sweep`)."""
        return self.run / "baseline.json"

    def directories(self) -> list[Path]:
        return [
            self.root,
            self.containerd_root,
            self.cni_conf_dir,
            self.cni_ipam_dir,
            self.kubelet_root,
            self.kubelet_certs,
            self.pod_logs,
            self.images_dir,
        ]
