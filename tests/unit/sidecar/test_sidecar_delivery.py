"""The violation loop's backoff after an outage: it ends once the ingest answers again.

Found by the chaos suite (tests/chaos): after an ingest outage of minutes the backoff had
grown to its 60 s cap, so a sidecar could sit out up to a minute after the ingest was back
before delivering its spool, and agents converged late. A heartbeat (or metrics report)
that gets through now ends a backoff that has no Retry-After to honour.
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
