"""The node's cgroup parent: created in every hierarchy, emptied and removed on stop.

The kubelet (cgroupfs driver, ``cgroupRoot``) and runc put every pod and container under
``/promethios-realnode``. This machine mounts the controllers as cgroup v1 hierarchies
beside an empty cgroup2 mount; runc creates its directories in all of them, so the parent
is made (and later removed) in each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .settings import CGROUP_PARENT


def hierarchies(mountinfo: str | None = None) -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 file system."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(fields[4]))
    return sorted(set(mounts))


def parents(mountinfo: str | None = None, name: str = CGROUP_PARENT) -> list[Path]:
    """``<hierarchy>/<name>`` for every hierarchy (the node's parent unless named)."""
    return [mount / name for mount in hierarchies(mountinfo)]


def create() -> None:
    """Create the parent everywhere; a new cpuset cgroup inherits the root's CPUs and
    memory nodes (cgroup v1 leaves them empty, and no task could join it)."""
    for parent in parents():
        parent.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            mine, root = parent / name, parent.parent / name
            if mine.exists() and not mine.read_text().strip():
                mine.write_text(root.read_text())


def existing(name: str = CGROUP_PARENT) -> list[Path]:
    """The parent ``name`` in every hierarchy where it exists."""
    return [p for p in parents(name=name) if p.is_dir()]


def pids(name: str = CGROUP_PARENT) -> set[int]:
    """Every process in any cgroup below the parent."""
    found: set[int] = set()
    for parent in existing(name):
        for directory, _, _ in os.walk(parent):
            with contextlib.suppress(OSError):
                procs = (Path(directory) / "cgroup.procs").read_text().split()
                found.update(int(pid) for pid in procs)
    return found


def kill_until_gone(find: Callable[[], set[int]], timeout: float = 15.0) -> set[int]:
    """SIGKILL what ``find`` returns until it returns nothing; return the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = find()
        if not remaining or time.monotonic() > deadline:
            return remaining
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def kill_all(timeout: float = 15.0) -> set[int]:
    """SIGKILL every process below the node's parent until none is left; the survivors."""
    return kill_until_gone(pids, timeout)


def remove(timeout: float = 10.0, name: str = CGROUP_PARENT) -> list[str]:
    """rmdir the parent's tree, deepest first, in every hierarchy; return failures."""
    deadline = time.monotonic() + timeout
    while True:
        failures = []
        for parent in existing(name):
            for directory, _, _ in os.walk(parent, topdown=False):
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    failures.append(f"rmdir {directory}: {error}")
        if not failures or time.monotonic() > deadline:
            return failures
        time.sleep(0.2)  # a just-killed process may still be leaving its cgroup
