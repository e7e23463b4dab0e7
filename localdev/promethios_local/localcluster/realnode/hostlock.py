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

LOCK_NAME = "promethios-realnode-lock"
DEFAULT_WAIT = 1800.0
POLL = 0.5


class HostBusyError(LocalClusterError):
    """Another process kept the real node's host lock for longer than we could wait."""


class AbstractSocketLock:
    """A process-re-entrant lock on a name in the abstract Unix socket namespace."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._guard = threading.Lock()
        self._depth = 0
        self._socket: socket.socket | None = None

    def acquire(self, timeout: float = DEFAULT_WAIT) -> None:
        """Take the lock (waiting up to ``timeout`` s), or deepen a hold we already own."""
        with self._guard:
            if self._depth:
                self._depth += 1
                return
            deadline = time.monotonic() + timeout
            while True:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # close-on-exec
                try:
                    sock.bind(b"\0" + self.name.encode())
                    break
                except OSError:
                    sock.close()
                    if time.monotonic() > deadline:
                        raise HostBusyError(
                            "another process runs a real node on this machine (it holds "
                            f"the lock @{self.name}); waited {timeout:.0f} s"
                        ) from None
                    time.sleep(POLL)
            self._socket, self._depth = sock, 1

    def release(self) -> None:
        """Undo one :meth:`acquire`; the last one unlocks."""
        with self._guard:
            if not self._depth:
                return
            self._depth -= 1
            if self._depth == 0 and self._socket is not None:
                self._socket.close()
                self._socket = None

    def held(self) -> bool:
        return self._depth > 0


_host = AbstractSocketLock(LOCK_NAME)
acquire = _host.acquire
release = _host.release
held = _host.held


@contextlib.contextmanager
def host_lock(timeout: float = DEFAULT_WAIT) -> Iterator[None]:
    """Hold the machine's real-node lock (see the module docstring)."""
    _host.acquire(timeout)
    try:
        yield
    finally:
        _host.release()
