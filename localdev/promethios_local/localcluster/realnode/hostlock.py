"""One real node per machine: a lock held for the node's whole life.

The node's host-level names (bridge, cgroup parent, run directory) are fixed, and
kube-proxy and kube-router own host-wide tables, so a second node would collide with
the first. The lock is a Unix socket bound in the abstract namespace: it leaves no file
behind and the kernel releases it when the holder dies, even by SIGKILL.

:func:`host_lock` waits for the lock (another test session may hold it) and is
re-entrant within a process, so a test can hold it around a node's start and stop while
it compares the host before and after.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from ..errors import LocalClusterError

LOCK_NAME = b"\0promethios-realnode-lock"
DEFAULT_WAIT = 1800.0
POLL = 0.5

_guard = threading.Lock()
_depth = 0
_socket: socket.socket | None = None


class HostBusyError(LocalClusterError):
    """Another process kept the real node's host lock for longer than we could wait."""


def acquire(timeout: float = DEFAULT_WAIT) -> None:
    """Take the lock (waiting up to ``timeout`` seconds), or deepen a hold we already own."""
    global _depth, _socket
    with _guard:
        if _depth:
            _depth += 1
            return
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(LOCK_NAME)
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise HostBusyError(
                        "another process runs a real node on this machine "
                        f"(it holds the lock @{LOCK_NAME[1:].decode()}); waited {timeout:.0f} s"
                    ) from None
                time.sleep(POLL)
        _socket, _depth = sock, 1


def release() -> None:
    """Undo one :func:`acquire`; the last one unlocks."""
    global _depth, _socket
    with _guard:
        if not _depth:
            return
        _depth -= 1
        if _depth == 0 and _socket is not None:
            _socket.close()
            _socket = None


def held() -> bool:
    return _depth > 0


@contextlib.contextmanager
def host_lock(timeout: float = DEFAULT_WAIT) -> Iterator[None]:
    acquire(timeout)
    try:
        yield
    finally:
        release()
