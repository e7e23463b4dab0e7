"""A small bounded pool of worker threads running work items one key at a time.

The informers hand each event's work to :class:`KeyedWorkers` and go back to their
watch at once. Items of one key (one watched object) run in order, never two at once;
an item that has waiting successors of the same sort is superseded by the latest
(``supersedes``), which is what kopf effectively did with an object's events. Nothing
runs until ``gate`` is set (kopf has filled the indexes the handlers read).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class KeyedWorkers(Generic[T]):
    """``workers`` threads running ``run(item)``; per key in order, coalesced."""

    def __init__(
        self,
        run: Callable[[T], None],
        workers: int,
        gate: threading.Event,
        supersedes: Callable[[T, T], bool] = lambda _old, _new: False,
        name: str = "promethios-worker",
    ) -> None:
        self.run, self.gate, self.supersedes = run, gate, supersedes
        self._pending: dict[Hashable, list[T]] = {}
        self._ready: deque[Hashable] = deque()
        self._busy: set[Hashable] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, item: T) -> None:
        """Queue ``item`` after the key's waiting items (or in place of the last one)."""
        with self._cond:
            queue = self._pending.get(key)
            if queue is None:
                self._pending[key] = [item]
                if key not in self._busy:
                    self._ready.append(key)
                    self._cond.notify()
            elif queue and self.supersedes(queue[-1], item):
                queue[-1] = item
            else:
                queue.append(item)

    def waiting(self) -> int:
        """Items queued and not yet started."""
        with self._cond:
            return sum(len(items) for items in self._pending.values())

    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        with self._cond:
            return not self._pending and not self._busy

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking items (running ones finish); wait up to ``timeout`` for the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout)

    def _take(self) -> tuple[Hashable, list[T]] | None:
        with self._cond:
            while not self._ready and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            key = self._ready.popleft()
            self._busy.add(key)
            return key, self._pending.pop(key)

    def _done(self, key: Hashable) -> None:
        with self._cond:
            self._busy.discard(key)
            if key in self._pending:  # more arrived while these ran
                self._ready.append(key)
                self._cond.notify()

    def _loop(self) -> None:
        while not self.gate.wait(0.5):
            if self._stopping:
                return
        while (taken := self._take()) is not None:
            key, items = taken
            try:
                for item in items:
                    try:
                        self.run(item)
                    except Exception:
                        log.exception("work item for %s failed", key)
            finally:
                self._done(key)
