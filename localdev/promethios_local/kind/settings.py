"""Fixed names and places of a kind session on this machine.

The bridge, subnet, run directory and cgroup parent are fixed so that leftovers of a
killed session can be recognised and swept; the real-node host lock keeps two sessions
(or a session and a real node) apart. Docker's data root lives in the cache, so the node
image is loaded into it once, not on every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..localcluster.binaries import DEFAULT_KUBERNETES_VERSION

KIND_NETWORK = "kind"  # the network kind uses when it exists (it creates it otherwise)
BRIDGE = "promkind0"  # Linux interface names are at most 15 characters
SUBNET = "10.247.0.0/24"
GATEWAY = "10.247.0.1"
RUN_DIR = Path("/run/promethios-kind")
CGROUP_PARENT = "promethios-kind"
GUARD_CHAIN = "PROMETHIOS-KIND-GUARD"
NODE_IMAGE_REPOSITORY = "localhost/promethios-kind-node"


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")) / ".cache")
    return Path(cache).expanduser() / "promethios"


def node_image_ref(version: str = DEFAULT_KUBERNETES_VERSION) -> str:
    return f"{NODE_IMAGE_REPOSITORY}:{version}"


def node_image_archive(version: str = DEFAULT_KUBERNETES_VERSION) -> Path:
    """Where ``make kind-image`` (hack/kind/node-image.sh) writes the node image."""
    return cache_dir() / "kind" / version / "node-image.tar"


@dataclass(frozen=True)
class KindPaths:
    """The daemon's places: data root (cached), run directory, socket and binaries."""

    data_root: Path
    run_dir: Path = RUN_DIR
    version: str = DEFAULT_KUBERNETES_VERSION

    @classmethod
    def default(cls) -> KindPaths:
        return cls(data_root=cache_dir() / "kind" / "docker")

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dockerd.pid"

    @property
    def runtime_shim(self) -> Path:
        return self.run_dir / "promethios-runc"

    @property
    def log(self) -> Path:
        return self.data_root.parent / "dockerd.log"

    @property
    def kind_bin(self) -> Path:
        """Where hack/kind/tools.sh installs ``kind`` (and kubeadm, crictl)."""
        return cache_dir() / "kind" / self.version / "bin"
