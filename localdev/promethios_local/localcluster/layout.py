"""Where a local cluster keeps its files, and which loopback ports it listens on."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"  # kwok hands out pod IPs from here
KUBERNETES_SERVICE_IP = "10.96.0.1"  # first address of the range: the `kubernetes` Service
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_DNS_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
APISERVER_IPS = [LOOPBACK, KUBERNETES_SERVICE_IP]


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one cluster: etcd on loopback, the API server on ``host``
    (loopback, or with a real node the node's bridge address, which pods can reach)."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    host: str = LOOPBACK


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago.

    All sockets stay bound until every port is chosen, so the ports are distinct.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def allocate_ports(host: str = LOOPBACK) -> Ports:
    """Pick free loopback ports for etcd (client, peer) and a free port on ``host`` for
    the API server."""
    etcd_client, etcd_peer = free_ports(2)
    (apiserver,) = free_ports(1, host)
    return Ports(etcd_client=etcd_client, etcd_peer=etcd_peer, apiserver=apiserver, host=host)


@dataclass(frozen=True)
class Layout:
    """The file layout under a cluster's working directory."""

    root: Path

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data_dir(self) -> Path:
        return self.root / "etcd-data"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def kwok_home(self) -> Path:
        """kwok's HOME, so a user's ``~/.kwok/kwok.yaml`` never leaks in."""
        return self.root / "kwok-home"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def node_dir(self) -> Path:
        """A real node's data: containerd's and the kubelet's roots, configuration."""
        return self.root / "node"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def kubeconfig(self, identity: str) -> Path:
        """The kubeconfig of a named client identity (``admin`` is the user-facing one)."""
        if identity == "admin":
            return self.admin_kubeconfig
        return self.root / f"{identity}.kubeconfig"

    def pki(self, name: str) -> Path:
        """A PEM file in the PKI directory, e.g. ``pki("ca.crt")``."""
        return self.pki_dir / name

    def log(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def directories(self) -> list[Path]:
        return [self.root, self.pki_dir, self.etcd_data_dir, self.log_dir, self.kwok_home]

    def owns(self, entry: Path) -> bool:
        """Whether ``entry`` (directly under the root) is one a cluster writes."""
        if entry.parent != self.root:
            return False
        known = {*self.directories()[1:], self.node_dir, self.kwok_config, self.admin_kubeconfig}
        return entry in known or entry.name.endswith(".kubeconfig")
