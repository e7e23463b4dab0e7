"""A real node for the local cluster: containerd + kubelet + kube-proxy + CoreDNS +
kube-router on a bridge of its own, opt-in through ``LocalCluster(real_nodes=1)``.

Pods land on it only when they tolerate its taint (:func:`toleration`), or when their
namespace carries :func:`steering_annotations`. Nothing is pulled: the images it runs are
imported from archives (``make image``). Everything it adds to the machine is removed on
stop, on Ctrl-C and on failure (:mod:`.sweep`); :mod:`.hoststate` takes the snapshots a
test compares to prove it.
"""

from .hostlock import HostBusyError, host_lock
from .images import default_archive_dir
from .node import RealNode
from .prereqs import RealNodePrerequisiteError
from .settings import (
    HOST_ADDRESS,
    NODE_LABEL,
    NODE_NAME,
    TAINT_KEY,
    steering_annotations,
    toleration,
)

__all__ = [
    "HOST_ADDRESS",
    "NODE_LABEL",
    "NODE_NAME",
    "TAINT_KEY",
    "HostBusyError",
    "RealNode",
    "RealNodePrerequisiteError",
    "default_archive_dir",
    "host_lock",
    "steering_annotations",
    "toleration",
]
