"""Settling the heap: long-lived objects frozen out of full collections, cycles still freed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from promethios import heap
from promethios.composition import SettledHeap, companions
from promethios.controller.options import parse_options
from promethios.ingest.settings import IngestSettings


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Leave the test process's collector as it was."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_a_settle_freezes_what_survives_and_a_full_one_frees_frozen_cycles() -> None:
    kept = [Node() for _ in range(100)]
    watched = [weakref.ref(node) for node in kept]
    heap.settle(full=False)
    assert gc.get_freeze_count() >= 100
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)  # out of the collector's sight
    kept.clear()  # the cycles are garbage now, but frozen:
    heap.settle(full=False)
    gc.collect()
    assert all(ref() is not None for ref in watched)  # no young pass or collect frees them
    heap.settle(full=True)
    assert all(ref() is None for ref in watched)  # the hourly full settle does


def test_full_settles_come_about_hourly() -> None:
    assert heap.settles_until_full(60) == 60
    assert heap.settles_until_full(600) == 6
    assert heap.settles_until_full(7200) == 1
    assert heap.settles_until_full(0) == 0


class Settles:
    """Stands in for :func:`heap.settle`: records each settle (full or not); ``reached``
    is set once ``count`` settles have run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
        self.calls: list[bool] = []
        self.count = count
        self.reached = asyncio.Event()
        monkeypatch.setattr(heap, "settle", self)

    def __call__(self, full: bool) -> float:
        self.calls.append(full)
        if len(self.calls) == self.count:
            self.reached.set()
        return 0.0


async def test_keep_settled_runs_young_settles_and_a_full_one_on_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settles = Settles(monkeypatch, 6)
    monkeypatch.setattr(heap, "FULL_EVERY_SECONDS", 0.03)
    task = asyncio.create_task(heap.keep_settled(0.01, first_after=0.0))
    await asyncio.wait_for(settles.reached.wait(), 5)
    task.cancel()
    assert settles.calls[:6] == [False, False, True, False, False, True]


async def test_a_zero_period_leaves_the_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(heap, "settle", lambda full: calls.append(full) or 0.0)
    await asyncio.wait_for(heap.keep_settled(0, first_after=0.0), 1)
    assert calls == []


@pytest.mark.parametrize("with_ingest", [True, False])
def test_the_operators_process_is_settled_with_or_without_the_in_process_ingest(
    with_ingest: bool,
) -> None:
    argv = [] if with_ingest else ["--no-ingest"]
    found, ingest = companions(parse_options(argv))
    assert (ingest is not None) == with_ingest
    settlers = [c for c in found if isinstance(c, SettledHeap)]
    assert [s.period for s in settlers] == [IngestSettings().gc_settle_seconds]  # exactly one
    assert found[0] is settlers[0]  # before the ingest: it settles from the start


async def test_the_heap_companion_settles_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    settles = Settles(monkeypatch, 3)
    monkeypatch.setattr(heap, "FULL_EVERY_SECONDS", 1.0)
    monkeypatch.setattr(
        heap, "start", lambda period: asyncio.create_task(heap.keep_settled(period, 0.0))
    )
    settler = SettledHeap(0.01)
    await settler.start(client=None)  # type: ignore[arg-type]
    await asyncio.wait_for(settles.reached.wait(), 5)
    await settler.stop()
    settled = len(settles.calls)
    await asyncio.sleep(0.05)
    assert len(settles.calls) == settled  # stopped: no more settles
