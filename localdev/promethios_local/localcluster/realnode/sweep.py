"""Removing everything the real node added to the machine, relative to a baseline.

Before the node changes anything, :func:`record_baseline` writes the host's packet-filter
state and which of the fixed host paths exist to ``/run/promethios-realnode/baseline.json``.
:func:`sweep` then removes, in this order:

1. processes: everything in the node's cgroups (containers, sandboxes) and every process
   whose command line names the node's run or data directory (containerd shims, which
   outlive containerd, and any component a killed launcher left behind);
2. mounts under the run and data directories (container root file systems, network
   namespaces, secret volumes, the kubelet's bind mount of its root), deepest first;
3. the cgroup tree in every hierarchy;
4. rules, chains, ipsets and nft tables added since the baseline (:mod:`.netfilter`);
5. the bridge with its veths, address and routes;
6. fixed host paths that did not exist before (``/var/lib/kubelet/device-plugins``,
   ``/var/log/containers``, ``/var/lib/cni``, ``/run/containerd`` ...);
7. a changed sysctl, then the run directory itself.

A launcher killed outright leaves the baseline behind; the next start sweeps with it
first (:func:`sweep_leftovers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cgroups, hostnet
from .netfilter import FilterState, remove_added
from .settings import FIXED_HOST_PATHS, RUN_DIR

log = logging.getLogger(__name__)


@dataclass
class Baseline:
    """The host before the node started, and what the node changed that must be restored."""

    node_root: str
    filter: FilterState
    existing_paths: list[str]
    bridge_nf_previous: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def capture(cls, node_root: Path) -> Baseline:
        existing = [str(p) for p in FIXED_HOST_PATHS if p.exists() or p.is_symlink()]
        return cls(str(node_root), FilterState.capture(), existing)

    def save(self, path: Path) -> None:
        data = {
            "node_root": self.node_root,
            "filter": self.filter.as_dict(),
            "existing_paths": self.existing_paths,
            "bridge_nf_previous": self.bridge_nf_previous,
        }
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        data = json.loads(path.read_text())
        return cls(
            node_root=str(data["node_root"]),
            filter=FilterState.from_dict(data["filter"]),
            existing_paths=[str(p) for p in data["existing_paths"]],
            bridge_nf_previous=data.get("bridge_nf_previous"),
        )


def _cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                raw = (entry / "cmdline").read_bytes()
                found[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def node_processes(node_root: Path, run_dir: Path = RUN_DIR) -> dict[int, str]:
    """Processes (other than this one) whose command line names the run or data directory."""
    markers = (str(run_dir), str(node_root))
    me = os.getpid()
    return {
        pid: line
        for pid, line in _cmdlines().items()
        if pid != me and any(marker in line for marker in markers)
    }


def kill_processes(node_root: Path, timeout: float = 15.0) -> list[str]:
    """SIGKILL container processes and node processes until none is left."""
    survivors = cgroups.kill_all(timeout)
    deadline = time.monotonic() + timeout
    while True:
        remaining = node_processes(node_root)
        if not remaining or time.monotonic() > deadline:
            break
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return [f"process {pid} still alive" for pid in survivors | set(remaining)]


def _unescape(mount_point: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        mount_point = mount_point.replace(code, char)
    return mount_point


def mounts_under(*prefixes: Path) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest first."""
    text = Path("/proc/self/mountinfo").read_text()
    points = {_unescape(line.split()[4]) for line in text.splitlines() if line.strip()}
    roots = [str(p) for p in prefixes]
    inside = [m for m in points if any(m == r or m.startswith(r + "/") for r in roots)]
    return sorted(inside, key=lambda m: (m.count("/"), m), reverse=True)


def unmount_all(*prefixes: Path) -> list[str]:
    """Unmount everything below ``prefixes`` (lazily when busy); return what stayed."""
    for _ in range(3):
        points = mounts_under(*prefixes)
        if not points:
            return []
        for point in points:
            plain = subprocess.run(["umount", point], capture_output=True, check=False)
            if plain.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return [f"still mounted: {point}" for point in mounts_under(*prefixes)]


def remove_new_paths(baseline: Baseline) -> list[str]:
    """Delete the fixed host paths that did not exist before, shallowest first (a removed
    directory takes its new children with it; a new child of an old directory goes alone)."""
    failures = []
    existed = set(baseline.existing_paths)
    for path in sorted(FIXED_HOST_PATHS, key=lambda p: len(p.parts)):
        if str(path) in existed or not (path.exists() or path.is_symlink()):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as error:
            failures.append(f"remove {path}: {error}")
    return failures


def sweep(baseline: Baseline, run_dir: Path = RUN_DIR) -> list[str]:
    """Remove everything the node added (see the module docstring); return failures."""
    node_root = Path(baseline.node_root)
    failures = kill_processes(node_root)
    failures += unmount_all(run_dir, node_root)
    failures += cgroups.remove()
    failures += remove_added(baseline.filter)
    failures += hostnet.delete_bridge()
    failures += remove_new_paths(baseline)
    with contextlib.suppress(OSError):
        hostnet.restore_bridge_netfilter(baseline.bridge_nf_previous)
    if not failures:
        shutil.rmtree(run_dir, ignore_errors=True)
    for failure in failures:
        log.error("real node clean-up: %s", failure)
    return failures


def sweep_leftovers(run_dir: Path = RUN_DIR) -> list[str]:
    """Sweep what an earlier node killed outright left behind (its baseline is still there)."""
    baseline_file = run_dir / "baseline.json"
    if not run_dir.exists():
        return []
    if not baseline_file.exists():
        shutil.rmtree(run_dir, ignore_errors=True)  # stopped before changing anything
        return []
    log.warning("a real node was not stopped cleanly; removing what it left behind")
    return sweep(Baseline.load(baseline_file), run_dir)
