"""Leftovers of a kind session that ended without its clean stop (SIGKILL, a crash).

The session's dockerd dies with its parent, but the containerd shims and the kind node
containers outlive it, with their mounts, cgroups, the ``kind`` bridge and the guard
chain. :func:`sweep` removes them by their fixed names (:mod:`.settings`): it kills every
process in the session's cgroup trees or naming its run directory, unmounts what is
mounted under the run directory and the data root, removes the cgroup trees, deletes the
bridge (its routes go with it), and undoes the packet-filter changes against the baseline
the session saved (:data:`BASELINE_NAME`), or removes the guard chain by name without one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from ..localcluster.realnode import cgroups
from ..localcluster.realnode.netfilter import FilterState, remove_added
from ..localcluster.realnode.sweep import unmount_all
from .settings import BRIDGE, CGROUP_PARENT, GUARD_CHAIN, KindPaths

BASELINE_NAME = "filter-baseline.json"


def baseline_path(paths: KindPaths) -> Path:
    return paths.data_root.parent / BASELINE_NAME


def save_baseline(paths: KindPaths, state: FilterState) -> None:
    path = baseline_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state.as_dict()))


def load_baseline(paths: KindPaths) -> FilterState | None:
    path = baseline_path(paths)
    return FilterState.from_dict(json.loads(path.read_text())) if path.is_file() else None


def session_pids(paths: KindPaths) -> set[int]:
    """Processes in the session's cgroups, and any naming its run directory (shims)."""
    found = cgroups.pids(CGROUP_PARENT)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(paths.run_dir).encode() in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
    found.discard(os.getpid())
    return found


def kill_processes(paths: KindPaths, timeout: float = 15.0) -> list[str]:
    survivors = cgroups.kill_until_gone(lambda: session_pids(paths), timeout)
    return [f"process {pid} survived SIGKILL" for pid in sorted(survivors)]


def remove_cgroups(timeout: float = 10.0) -> list[str]:
    """rmdir the session's cgroup trees, deepest first; return failures."""
    return cgroups.remove(timeout, CGROUP_PARENT)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def delete_bridge() -> list[str]:
    if _run("ip", "link", "show", BRIDGE).returncode != 0:
        return []
    result = _run("ip", "link", "delete", BRIDGE)
    return [f"ip link delete {BRIDGE}: {result.stderr.strip()}"] if result.returncode else []


def remove_guard_by_name() -> list[str]:
    """Without a baseline: the jump to the guard chain, its rules, the chain itself."""
    while (
        _run("iptables", "-w", "-t", "mangle", "-D", "FORWARD", "-j", GUARD_CHAIN).returncode == 0
    ):
        pass
    _run("iptables", "-w", "-t", "mangle", "-F", GUARD_CHAIN)
    _run("iptables", "-w", "-t", "mangle", "-X", GUARD_CHAIN)
    still = _run("iptables", "-w", "-t", "mangle", "-S", GUARD_CHAIN).returncode == 0
    return [f"iptables chain {GUARD_CHAIN} could not be removed"] if still else []


def restore_filter(paths: KindPaths) -> list[str]:
    baseline = load_baseline(paths)
    failures = remove_added(baseline) if baseline is not None else remove_guard_by_name()
    if not failures:
        baseline_path(paths).unlink(missing_ok=True)
    return failures


def sweep(paths: KindPaths) -> list[str]:
    """Remove every trace of a session whose daemon is gone; return what stayed."""
    failures = kill_processes(paths)
    failures += unmount_all(paths.exec_root, paths.run_dir)
    failures += unmount_all(paths.data_root)
    failures += remove_cgroups()
    failures += delete_bridge()
    failures += restore_filter(paths)
    if paths.run_dir.exists():
        subprocess.run(["rm", "-rf", str(paths.run_dir)], check=False)
        if paths.run_dir.exists():
            failures.append(f"could not remove {paths.run_dir}")
    return failures
