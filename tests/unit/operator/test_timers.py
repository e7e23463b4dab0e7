"""The timer heap behind scheduled reconciles: due order, cancellation, one waiting thread."""

from __future__ import annotations

import threading
import time

from promethios.controller.timers import TimerHeap


def test_calls_fire_in_due_order_and_a_cancelled_one_never_fires() -> None:
    timers = TimerHeap(workers=1)  # one worker: the firing order is the due order
    fired: list[str] = []
    done = threading.Event()

    def record(name: str) -> None:
        fired.append(name)
        if name == "last":
            done.set()

    timers.start(0.3, lambda: record("last"))
    timers.start(0.1, lambda: record("first"))
    cancelled = timers.start(0.2, lambda: record("cancelled"))
    cancelled.cancel()
    assert done.wait(5), fired
    assert fired == ["first", "last"]
    assert timers.pending() == 0


def test_thousands_of_waiting_calls_need_no_thread_each() -> None:
    timers = TimerHeap()
    before = threading.active_count()
    handles = [timers.start(3600, lambda: None) for _ in range(2000)]
    assert timers.pending() == 2000
    # The waiting thread and its pool (idle until a call is due) only.
    assert threading.active_count() - before <= 1
    for handle in handles:
        handle.cancel()
    assert timers.pending() == 0


def test_a_call_is_not_made_before_it_is_due() -> None:
    timers = TimerHeap()
    fired = threading.Event()
    start = time.monotonic()
    timers.start(0.2, fired.set)
    assert fired.wait(5)
    assert time.monotonic() - start >= 0.2
