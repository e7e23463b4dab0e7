"""Snapshots of what a real node can change on the machine, for before/after comparison.

A snapshot holds the network links and routes, ``iptables-save``/``ip6tables-save`` (without
counters), ipset names, ``nft list ruleset``, mount points, the node-related processes,
cgroup directories one level below every hierarchy's root, which of the fixed host paths
exist, and the sysctls the node may touch. Two snapshots taken before a node starts and
after it stopped must be equal; :meth:`HostSnapshot.differences` says where they are not.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cgroups
from .netfilter import ipset_names, nft_ruleset, normalise_save, save
from .settings import BRIDGE, CGROUP_PARENT, FIXED_HOST_PATHS, RUN_DIR

#: Executables a node runs; a process of one of these that outlives the node is a leak.
NODE_EXECUTABLES = (
    "containerd",
    "containerd-shim-runc-v2",
    "kubenode",
    "kubelet",
    "kube-proxy",
    "coredns",
    "kube-router",
    "busybox",
)
SYSCTLS = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/ipv4/conf/all/route_localnet",
)


def _lines(*argv: str) -> list[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return [line.rstrip() for line in result.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    """``name kind master``: what exists and how it is wired, not its counters or state."""
    found = []
    for line in _lines("ip", "-o", "-d", "link", "show"):
        name = line.split(":", 2)[1].strip().split("@")[0]
        master = line.split(" master ")[1].split()[0] if " master " in line else "-"
        kind = next((k for k in ("bridge", "veth", "vxlan", "dummy") if f" {k} " in line), "-")
        found.append(f"{name} {kind} {master}")
    return sorted(found)


def _node_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        command = " ".join(part.decode(errors="replace") for part in argv if part)
        if not command:
            continue
        executable = Path(command.split()[0]).name
        if executable in NODE_EXECUTABLES or str(RUN_DIR) in command:
            found.append(f"{entry.name} {command[:200]}")
    return sorted(found)


def _cgroup_dirs() -> list[str]:
    dirs = []
    for mount in cgroups.hierarchies():
        dirs += [str(child) for child in mount.iterdir() if child.is_dir()]
    return sorted(dirs)


def _sysctls() -> dict[str, str]:
    values = {}
    for path in SYSCTLS:
        try:
            values[path] = Path(path).read_text().strip()
        except OSError:
            values[path] = "<absent>"
    return values


def _mounts() -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return sorted({line.split()[4] for line in text.splitlines() if line.strip()})


@dataclass(frozen=True)
class HostSnapshot:
    """See the module docstring."""

    links: list[str]
    routes: list[str]
    iptables: str
    ip6tables: str
    ipsets: list[str]
    nft: str
    mounts: list[str]
    processes: list[str]
    cgroups: list[str]
    paths: list[str]
    sysctls: dict[str, str]

    @classmethod
    def capture(cls) -> HostSnapshot:
        routes = _lines("ip", "route", "show", "table", "all") + _lines("ip", "-6", "route")
        return cls(
            links=_links(),
            routes=sorted(routes),
            iptables=normalise_save(save("ipv4")),
            ip6tables=normalise_save(save("ipv6")),
            ipsets=ipset_names(),
            nft=nft_ruleset(),
            mounts=_mounts(),
            processes=_node_processes(),
            cgroups=_cgroup_dirs(),
            paths=[str(p) for p in FIXED_HOST_PATHS if p.exists() or p.is_symlink()],
            sysctls=_sysctls(),
        )

    def differences(self, other: HostSnapshot) -> dict[str, dict[str, object]]:
        """Per field that differs: what only ``self`` has and what only ``other`` has."""
        mine, theirs = asdict(self), asdict(other)
        found: dict[str, dict[str, object]] = {}
        for name, before in mine.items():
            after = theirs[name]
            if before == after:
                continue
            if isinstance(before, str):
                before, after = before.splitlines(), after.splitlines()
            if isinstance(before, dict):
                found[name] = {"before": before, "after": after}
                continue
            found[name] = {
                "gone": sorted(set(before) - set(after)),
                "added": sorted(set(after) - set(before)),
            }
        return found

    def node_traces(self) -> list[str]:
        """What in this snapshot belongs to a (running) real node."""
        traces = [link for link in self.links if link.startswith(BRIDGE) or BRIDGE in link]
        traces += [m for m in self.mounts if m.startswith(str(RUN_DIR))]
        traces += [c for c in self.cgroups if c.endswith(CGROUP_PARENT)]
        return traces
