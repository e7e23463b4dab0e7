"""Retrying against a down ingest: the violation loop's backoff, and the drain's.

Found by the chaos suite (tests/chaos): after an ingest outage of minutes the backoff had
grown to its 60 s cap, so a sidecar could sit out up to a minute after the ingest was back
before delivering its spool, and agents converged late. A heartbeat (or metrics report)
that gets through now ends a backoff that has no Retry-After to honour. And a stopping
sidecar's drain (up to 10 minutes) retried 5 times a second however long the ingest stayed
down: fifty replaced pods made 250 attempts a second at an ingest that was coming back.
It now doubles its pause up to 2 s.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from sidecar_fakes import Ingest, Upstream, write_config

from promethios.api.wire import PATH_VIOLATIONS
from promethios.sidecar.app import Sidecar
from promethios.sidecar.delivery import Delivery

#: A backoff far longer than any wait below: only an early end can deliver in time.
BACKOFF = 30.0


class Longest(random.Random):
    """Jitter that always picks the longest wait (so the backoff is exactly its bound)."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def until(predicate: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {what}"
        await asyncio.sleep(0.02)


async def spool_one_violation(sidecar: Sidecar) -> None:
    """A model call with an e-mail address: the sidecar spools a PII violation."""
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "mail a@b.io"}]}
    url = f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200
    assert len(sidecar.state.spool.pending(10)) == 1


async def backing_off(tmp_path: Path, upstream: Upstream, ingest: Ingest) -> Sidecar:
    """A sidecar whose violation loop failed once against a down ingest and now waits
    its full first backoff (30 s)."""
    sidecar = Sidecar(write_config(tmp_path, upstream.url, ingest.url), backoff_base=BACKOFF,
                      backoff_cap=2 * BACKOFF, loops=False)  # fmt: skip
    await sidecar.start(agent_port=0, metrics_port=0)
    assert isinstance(sidecar.delivery, Delivery)
    sidecar.delivery.rng = Longest()
    ingest.status = 503  # down, and naming no Retry-After
    await spool_one_violation(sidecar)
    return sidecar


async def test_a_heartbeat_that_gets_through_ends_the_violation_backoff(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    sidecar = await backing_off(tmp_path, upstream, ingest)
    delivery = sidecar.delivery
    assert delivery is not None
    loop = asyncio.create_task(delivery.violation_loop())
    try:
        await until(lambda: ingest.bodies(PATH_VIOLATIONS), 5, "the first (failed) attempt")
        ingest.status = 200  # the ingest is back; the loop still waits out its backoff
        await asyncio.sleep(0.5)  # a window in which nothing may happen
        assert ingest.violations == {} and len(ingest.bodies(PATH_VIOLATIONS)) == 1

        assert (await delivery.send_heartbeat()).ok
        await until(lambda: ingest.violations, 5, "the spooled violation delivered")
        assert len(ingest.violations) == 1 and sidecar.state.spool.pending(10) == []
    finally:
        loop.cancel()
        await sidecar.stop()


async def test_after_a_retry_after_a_heartbeat_ends_the_backoff_but_not_before_it(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    """A 503 naming Retry-After (a status write failed: the API server is down) late in a long
    outage: the next attempt comes once the Retry-After has passed and the ingest answered a
    heartbeat, not after the whole grown backoff."""
    sidecar = await backing_off(tmp_path, upstream, ingest)
    delivery = sidecar.delivery
    assert delivery is not None
    ingest.retry_after = "1"
    loop = asyncio.create_task(delivery.violation_loop())
    try:
        await until(lambda: ingest.bodies(PATH_VIOLATIONS), 5, "the first (failed) attempt")
        failed_at = asyncio.get_running_loop().time()
        ingest.status = 200
        assert (await delivery.send_heartbeat()).ok  # at once: within the Retry-After
        await until(lambda: ingest.violations, 5, "the spooled violation delivered")
        delivered_at = ingest.received_at[next(iter(ingest.violations))]
        assert 0.9 <= delivered_at - failed_at < 3.0, delivered_at - failed_at
    finally:
        loop.cancel()
        await sidecar.stop()


async def test_a_failed_heartbeat_leaves_the_backoff_alone(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    sidecar = await backing_off(tmp_path, upstream, ingest)
    delivery = sidecar.delivery
    assert delivery is not None
    loop = asyncio.create_task(delivery.violation_loop())
    try:
        await until(lambda: ingest.bodies(PATH_VIOLATIONS), 5, "the first (failed) attempt")
        assert not (await delivery.send_heartbeat()).ok  # still down
        await asyncio.sleep(0.5)  # a window in which nothing may happen
        assert len(ingest.bodies(PATH_VIOLATIONS)) == 1, "retried before its backoff ended"
    finally:
        loop.cancel()
        await sidecar.stop()


async def down_with_one_spooled(tmp_path: Path, upstream: Upstream, ingest: Ingest) -> Sidecar:
    """A sidecar (no loops) with one violation spooled, the ingest answering 503."""
    sidecar = Sidecar(write_config(tmp_path, upstream.url, ingest.url), loops=False)
    await sidecar.start(agent_port=0, metrics_port=0)
    ingest.status = 503
    await spool_one_violation(sidecar)
    return sidecar


async def test_a_drain_against_a_down_ingest_backs_off(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    sidecar = await down_with_one_spooled(tmp_path, upstream, ingest)
    assert sidecar.delivery is not None
    try:
        emptied = await sidecar.delivery.drain(3.0)
        attempts = len(ingest.bodies(PATH_VIOLATIONS))
        # 0.2 s apart that would be about 15; doubling from 0.2 s (±10 %) it is 4 or 5.
        assert not emptied and 3 <= attempts <= 6, attempts
    finally:
        await sidecar.stop()


async def test_a_backed_off_drain_delivers_soon_after_the_ingest_returns(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    sidecar = await down_with_one_spooled(tmp_path, upstream, ingest)
    assert sidecar.delivery is not None

    async def come_back() -> None:
        await until(lambda: len(ingest.bodies(PATH_VIOLATIONS)) >= 4, 10, "four attempts")
        ingest.status = 200

    returning = asyncio.create_task(come_back())
    began = asyncio.get_running_loop().time()  # the fake ingest's clock too
    try:
        emptied = await sidecar.delivery.drain(30.0)
        await returning
        back_at = ingest.received_at[next(iter(ingest.violations))]
        # The fourth attempt came 1.4 s in; the next pause is at most the 2 s cap (+10 %).
        assert emptied and len(ingest.violations) == 1 and back_at - began < 6.0
    finally:
        returning.cancel()
        await sidecar.stop()
