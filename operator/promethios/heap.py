"""Keeping the garbage collector's full passes short in a process that holds a fleet.

The ingest holds every agent's state for as long as the agent exists, the operator every
agent's cache entries and bookkeeping: at 10,000 agents, millions of objects that live for
days. CPython's full (generation 2) collection walks all of them, about 0.75 s on this
machine at 10,000 agents in the ingest, and it runs often: every status refresh, condition
and summary creates objects that outlive the young generations and count towards the next
full pass. The event loop stops for the whole pass, so every report in flight waits (the
ingest's report p99 at 10,000 agents was that pause).

So the heap is *settled* every ``period`` seconds: one collection of what is not frozen,
then :func:`gc.freeze`, which moves every survivor out of the collector's sight. Later full
passes walk only what was created since (cheap), and frozen objects are still freed as soon
as nothing refers to them (reference counting). What freezing keeps is garbage in
reference *cycles* among frozen objects, so once an hour a settle unfreezes everything
first and makes one full pass: a single long pause an hour instead of one every few
seconds.

The collector is one per process, so whoever owns the process settles it, once: the
composition root for ``promethios operator`` (with or without the in-process ingest) and
for ``promethios ingest --dashboard-port``, :mod:`.ingest.main` for a plain ``promethios
ingest``. Libraries and tests that start an ingest in their own process leave it alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: Seconds between settles that unfreeze everything first (reclaiming frozen cycles).
FULL_EVERY_SECONDS = 3600.0


def settle(full: bool) -> float:
    """Collect (everything when ``full``, else only what is not frozen), then freeze what
    survived; the seconds the pass took."""
    started = time.perf_counter()
    if full:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


def settles_until_full(period: float) -> int:
    """Settles between two full ones, so a full one comes about every hour."""
    return max(1, round(FULL_EVERY_SECONDS / period)) if period > 0 else 0


async def keep_settled(period: float, first_after: float = 10.0) -> None:
    """Settle ``first_after`` seconds from now, then every ``period`` seconds, a full settle
    every :data:`FULL_EVERY_SECONDS`; until cancelled. A ``period`` of 0 does nothing."""
    if period <= 0:
        return
    every = settles_until_full(period)
    await asyncio.sleep(first_after)
    count = 0
    while True:
        full = count % every == every - 1
        took = settle(full)
        kind = "full" if full else "young"
        log.debug("heap settled (%s) in %.3f s; %d frozen", kind, took, gc.get_freeze_count())
        count += 1
        await asyncio.sleep(period)


def start(period: float) -> asyncio.Task[None]:
    """:func:`keep_settled` as a task of the running loop (cancel it to stop)."""
    return asyncio.get_running_loop().create_task(keep_settled(period), name="heap-settle")
