"""An embedded Kubernetes control plane for tests, ``make run`` and benchmarks.

``LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok (fake nodes) as child processes on free loopback ports, from the binaries that
``make testenv`` builds (see :func:`find_binaries`), and stops them all again::

    from promethios_local.localcluster import LocalCluster

    with LocalCluster(nodes=2) as cluster:
        cluster.kubectl("get", "nodes")   # cluster.kubeconfig is the admin kubeconfig

Only the standard library and ``cryptography`` (and ``pyyaml``) are imported.
"""

from .binaries import Binaries, find_binaries, kubernetes_version
from .cli import run_cli
from .cluster import LocalCluster
from .crds import install_crds
from .errors import BinariesNotFoundError, ComponentError, LocalClusterError
from .layout import free_ports
from .readiness import KubectlError

__all__ = [
    "Binaries",
    "BinariesNotFoundError",
    "ComponentError",
    "KubectlError",
    "LocalCluster",
    "LocalClusterError",
    "find_binaries",
    "free_ports",
    "install_crds",
    "kubernetes_version",
    "run_cli",
]
