"""Child-process management: every component is started so that it cannot outlive us.

- Each child runs in its own session/process group, so a terminal's Ctrl-C reaches
  only the Python parent, which then stops the components in order.
- On Linux each child also gets ``PR_SET_PDEATHSIG(SIGKILL)``: if the parent dies, even
  by ``kill -9``, the kernel kills the child. (The signal follows the *thread* that
  started the child, so start clusters from a long-lived thread, e.g. the main one.)
- :func:`stop_all` runs at interpreter exit, and :func:`install_sigterm_handler` turns
  SIGTERM into ``SystemExit`` so ``with`` blocks and ``atexit`` hooks run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
DEFAULT_STOP_TIMEOUT = 10.0

_live: set[ManagedProcess] = set()  # strong refs: an unreferenced child still gets stopped
_live_lock = threading.Lock()


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running process: libc is linked in
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()  # loaded before any fork: the child only calls it


def _die_with_parent_preexec(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that ties the child's life to ``parent_pid`` (Linux only)."""

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a (log) file, or a note if it cannot be read."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as error:
        return f"<cannot read {path}: {error}>"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One long-running component, its log file, and how to stop it."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        """Spawn the process with stdout and stderr going to its log file."""
        with self.log_path.open("ab") as log_file:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent_preexec(os.getpid()),
            )
        with _live_lock:
            _live.add(self)
        log.debug("started %s (pid %s): %s", self.name, self.pid, " ".join(self.argv))

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else ``None``."""
        return self._popen.poll() if self._popen else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group (it is the group leader)."""
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to exit; True if it did."""
        if self._popen is None:
            return True
        try:
            self._popen.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the process group and reap the process."""
        self.signal(signal.SIGKILL)
        self.wait(5.0)
        with _live_lock:
            _live.discard(self)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
        stop_processes([self], timeout)


def stop_processes(
    processes: Sequence[ManagedProcess], timeout: float = DEFAULT_STOP_TIMEOUT
) -> None:
    """Stop several processes together: SIGTERM all, wait, SIGKILL the stragglers."""
    for process in processes:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        if not process.wait(deadline - time.monotonic()):
            log.warning("%s did not stop within %.0f s; killing it", process.name, timeout)
        process.kill()


def stop_all() -> None:
    """Kill every process still alive that this module started (the ``atexit`` hook)."""
    with _live_lock:
        remaining = list(_live)
    if remaining:
        stop_processes(remaining, timeout=5.0)


atexit.register(stop_all)

_sigterm_installed = False


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_sigterm_handler() -> None:
    """Make SIGTERM unwind the stack (so clusters stop cleanly) instead of killing us.

    Only done from the main thread and only if nobody installed a handler before.
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_system_exit)
    _sigterm_installed = True
