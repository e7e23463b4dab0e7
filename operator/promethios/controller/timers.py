"""Timers for scheduled reconciles: one thread keeps them all, a small pool fires them.

A ``threading.Timer`` per scheduled reconcile costs a thread (and its stack) while it
waits; at fleet scale thousands wait at once (every new agent's first status waits for
its pods), so one thread keeps a heap of due times instead, and hands each due call to
a few workers (a reconcile blocks on API requests; one slow request must not hold up
every other timer).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

#: Calls run at once when many fall due together (each is one agent's reconcile).
WORKERS = 4


class Handle:
    """One scheduled call; :meth:`cancel` stops it unless it already started."""

    def __init__(self, fire: Callable[[], None]) -> None:
        self.fire = fire
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerHeap:
    """Calls ``fire`` after ``delay`` seconds (monotonic), all from one waiting thread."""

    def __init__(self, workers: int = WORKERS) -> None:
        self._heap: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()  # equal due times fire in scheduling order
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def start(self, delay: float, fire: Callable[[], None]) -> Handle:
        """Schedule ``fire``; the waiting thread and the pool start with the first call."""
        handle = Handle(fire)
        with self._changed:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), handle))
            if self._thread is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="timer")
                self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
                self._thread.start()
            self._changed.notify()
        return handle

    def pending(self) -> int:
        """Scheduled calls not yet due or cancelled."""
        with self._changed:
            return sum(1 for _, _, handle in self._heap if not handle.cancelled)

    def _next_due(self) -> Handle:
        with self._changed:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)  # a cancelled call need not wait its turn
                if not self._heap:
                    self._changed.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._changed.wait(wait)

    def _run(self) -> None:
        assert self._pool is not None
        while True:
            handle = self._next_due()
            self._pool.submit(_fire, handle)


def _fire(handle: Handle) -> None:
    if handle.cancelled:
        return
    try:
        handle.fire()
    except Exception:
        log.warning("a scheduled call failed", exc_info=True)


#: The process's timers (the operator runs one reconcile context).
TIMERS = TimerHeap()
