"""Escape 2 (sidecar side): a chatty agent defers its own violations.

The ingest limits each agent's requests (429 + Retry-After, retried by the
sidecar). If the agent's own heartbeats and metrics go through to the ingest as
fast as the agent sends them, they use up that budget and the sidecar's
violation deliveries wait behind them indefinitely. Against a fake ingest that
applies such a per-agent limit, a violation the sidecar finds while the agent
hammers its reporting API must still reach the ingest within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from sidecar_fakes import Ingest, SidecarFactory

from promethios.api.wire import PATH_HEARTBEAT, PATH_METRICS, PATH_VIOLATIONS
from promethios.sidecar.app import Sidecar

BOUND_SECONDS = 2.0
BEAT = {"status": "active", "uptime": 5, "lastActivity": "2026-01-01T00:00:00Z"}
METRICS = {
    "timestamp": "2026-01-01T00:00:00Z",
    "metrics": {"trustScore": 99, "violations": [], "interactions": 3, "responseTime": 12},
}
OWN_VIOLATION = {"violation": {"type": "agent.self_report", "severity": "low", "description": "d"}}
BLOCKED = {"policy": {"blockedPatterns": [{"name": "nightingale", "pattern": "nightingale"}]}}


async def hammer(sidecar: Sidecar, path: str, body: dict[str, Any]) -> None:
    """Post ``body`` to the agent-facing ``path`` as fast as the sidecar answers, forever."""
    url = f"http://127.0.0.1:{sidecar.agent_port}{path}"
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.post(url, json=body) as response:
                await response.read()


@contextlib.asynccontextmanager
async def hammering(sidecar: Sidecar, *targets: tuple[str, dict[str, Any]]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(hammer(sidecar, p, b)) for p, b in targets for _ in range(4)]
    try:
        await asyncio.sleep(0.5)  # the agent's reports have used the ingest's budget
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def found_violation_delay(sidecar: Sidecar, ingest: Ingest) -> float:
    """Trigger a policy violation; seconds until the ingest has it (inf if not in 5 s)."""
    loop = asyncio.get_running_loop()
    url = f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "about nightingale"}]}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 403
    found = loop.time()
    deadline = found + 5.0
    while loop.time() < deadline:
        key = next(
            (k for k, v in ingest.violations.items() if v["type"].startswith("blocked_pattern")),
            None,
        )
        if key is not None:
            return ingest.received_at[key] - found
        await asyncio.sleep(0.02)
    return float("inf")


async def test_heartbeat_and_metrics_flood_cannot_delay_a_violation(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    ingest.rate_per_second, ingest.burst = 5.0, 5.0
    sidecar = await make_sidecar(loops=True, **BLOCKED)
    async with hammering(sidecar, (PATH_HEARTBEAT, BEAT), (PATH_METRICS, METRICS)):
        delay = await found_violation_delay(sidecar, ingest)
    assert delay < BOUND_SECONDS, f"violation reached the ingest after {delay:.2f} s"


async def test_self_reported_violation_flood_cannot_delay_a_found_violation(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    ingest.rate_per_second, ingest.burst = 5.0, 5.0
    sidecar = await make_sidecar(loops=True, **BLOCKED)
    async with hammering(sidecar, (PATH_VIOLATIONS, OWN_VIOLATION)):
        delay = await found_violation_delay(sidecar, ingest)
    assert delay < BOUND_SECONDS, f"violation reached the ingest after {delay:.2f} s"


async def test_agent_reports_are_folded_into_the_sidecars_own(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    """What the agent reports still reaches the ingest, at the sidecar's pace."""
    sidecar = await make_sidecar(**BLOCKED)
    assert sidecar.delivery is not None
    url = f"http://127.0.0.1:{sidecar.agent_port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.post(url + PATH_HEARTBEAT, json={**BEAT, "status": "error"}) as r:
                assert r.status == 202
            async with session.post(url + PATH_METRICS, json=METRICS) as r:
                assert r.status == 202
    assert ingest.requests == []  # nothing forwarded on the agent's clock
    assert (await sidecar.delivery.send_heartbeat()).ok
    assert (await sidecar.delivery.send_metrics()).ok
    [beat] = ingest.bodies(PATH_HEARTBEAT)
    [metrics] = ingest.bodies(PATH_METRICS)
    assert beat["status"] == "error"  # the agent's own status is what the ingest sees
    assert metrics["metrics"]["interactions"] >= 3  # at least what the agent counted
    assert json.dumps(metrics).count("trustScore") == 1
