"""kind on this machine without a registry: a Docker daemon of the session's own, the node
image ``make kind-image`` builds, and a clean machine afterwards.

:class:`KindSession` holds the real-node host lock, starts :class:`DockerDaemon` (its own
socket, run directory and cgroup parent; no iptables, masquerade or forwarding of its own),
creates the ``kind`` Docker network on a bridge whose traffic may not leave the machine,
and loads the node image. On stop it deletes the clusters, the network and the guard
rules, stops the daemon and removes what it left (mounts, cgroups, run directory).
"""

from .dockerd import DockerDaemon, DockerError
from .session import KindSession
from .settings import KindPaths, node_image_archive, node_image_ref

__all__ = [
    "DockerDaemon",
    "DockerError",
    "KindPaths",
    "KindSession",
    "node_image_archive",
    "node_image_ref",
]
