"""The informers' worker pool (:mod:`promethios.controller.workpool`): gated, bounded, one
key at a time and in order, superseded items dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from promethios.controller.workpool import KeyedWorkers


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Runs:
    """Records what ran; items named ``block-*`` wait until released."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.release = threading.Event()
        self.started = threading.Event()
        self._guard = threading.Lock()

    def __call__(self, item: tuple[str, str]) -> None:
        key, what = item
        with self._guard:
            self.overlaps += key in self.running
            self.running.add(key)
        if what.startswith("block"):
            self.started.set()
            self.release.wait(5)
        if what == "fail":
            with self._guard:
                self.running.discard(key)
            raise RuntimeError("a handler failed")
        with self._guard:
            self.running.discard(key)
            self.done.append(item)


@pytest.fixture
def pool() -> Iterator[tuple[KeyedWorkers[tuple[str, str]], Runs, threading.Event]]:
    runs, gate = Runs(), threading.Event()
    workers = KeyedWorkers(runs, 3, gate, supersedes=lambda old, new: old[1] == new[1])
    workers.start()
    try:
        yield workers, runs, gate
    finally:
        runs.release.set()
        gate.set()
        workers.stop()


def test_nothing_runs_before_the_gate_opens(
    pool: tuple[KeyedWorkers[tuple[str, str]], Runs, threading.Event],
) -> None:
    workers, runs, gate = pool
    workers.submit("a", ("a", "x"))
    workers.submit("b", ("b", "x"))
    assert not runs.started.wait(0.3) and runs.done == [] and workers.waiting() == 2
    gate.set()
    wait_until(workers.idle)
    assert sorted(runs.done) == [("a", "x"), ("b", "x")]


def test_one_keys_items_run_in_order_never_at_once_and_superseded_ones_are_dropped(
    pool: tuple[KeyedWorkers[tuple[str, str]], Runs, threading.Event],
) -> None:
    workers, runs, gate = pool
    gate.set()
    workers.submit("a", ("a", "block"))
    assert runs.started.wait(5)
    for what in ("ADDED", "MODIFIED", "MODIFIED", "DELETED", "fail", "ADDED"):
        workers.submit("a", ("a", what))
    workers.submit("b", ("b", "x"))  # another key is not held up by a's
    wait_until(lambda: ("b", "x") in runs.done)
    assert ("a", "block") not in runs.done
    runs.release.set()
    wait_until(workers.idle)
    kinds = [what for key, what in runs.done if key == "a"]
    assert kinds == ["block", "ADDED", "MODIFIED", "DELETED", "ADDED"]  # one MODIFIED
    assert runs.overlaps == 0


def test_stop_ends_the_threads(
    pool: tuple[KeyedWorkers[tuple[str, str]], Runs, threading.Event],
) -> None:
    workers, _, gate = pool
    gate.set()
    workers.stop(timeout=5)
    assert not any(t.is_alive() for t in workers._threads)
