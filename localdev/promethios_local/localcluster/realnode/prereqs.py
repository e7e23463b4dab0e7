"""What a real node needs from the machine, checked before anything is changed.

Each missing piece is named with the command that provides it, so a test run on a machine
without them fails with instructions instead of a half-started node.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LocalClusterError
from .hostnet import BRIDGE_NF_CALL
from .images import BUSYBOX_CANDIDATES

HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "ipset": "ipset",
    "nft": "nftables",
    "ip": "iproute2",
    "umount": "mount",
}
CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
TESTENV_BINARIES = ("kubelet", "kube-proxy", "coredns", "kube-router")


class RealNodePrerequisiteError(LocalClusterError):
    """The machine lacks something a real node needs; the message says how to get it."""


@dataclass(frozen=True)
class NodeBinaries:
    """The node's executables built by ``make testenv`` and found on the host."""

    kubelet: Path
    kube_proxy: Path
    coredns: Path
    kube_router: Path
    containerd: Path


def missing_prerequisites(bin_dir: Path, archives: Sequence[Path]) -> list[str]:
    """One line per missing prerequisite (empty when the machine is ready)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("a real node needs root (network, mounts and cgroups)")
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"{tool} not on PATH: apt-get install {package} (make host-packages)")
    for plugin in CNI_PLUGINS:
        if not (CNI_DIR / plugin).is_file():
            problems.append(
                f"CNI plugin {CNI_DIR / plugin} missing: apt-get install "
                "containernetworking-plugins (make host-packages)"
            )
    if not any(candidate.is_file() for candidate in BUSYBOX_CANDIDATES):
        problems.append("static busybox missing: apt-get install busybox-static")
    for name in TESTENV_BINARIES:
        if not os.access(bin_dir / name, os.X_OK):
            problems.append(f"{bin_dir / name} missing: run `make testenv`")
    if not BRIDGE_NF_CALL.exists():
        problems.append(f"{BRIDGE_NF_CALL} missing: the kernel needs br_netfilter")
    for archive in archives:
        if not archive.is_file():
            problems.append(f"image archive {archive} missing: run `make image`")
    return problems


def check(bin_dir: Path, archives: Sequence[Path]) -> NodeBinaries:
    """Raise :class:`RealNodePrerequisiteError` listing every missing piece."""
    problems = missing_prerequisites(bin_dir, archives)
    if problems:
        raise RealNodePrerequisiteError(
            "this machine cannot run a real node:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    containerd = shutil.which("containerd")
    assert containerd is not None
    return NodeBinaries(
        kubelet=bin_dir / "kubelet",
        kube_proxy=bin_dir / "kube-proxy",
        coredns=bin_dir / "coredns",
        kube_router=bin_dir / "kube-router",
        containerd=Path(containerd),
    )
