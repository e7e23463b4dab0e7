"""The agent as attacker against its budget (issue 12): it must not spend more than the limit.

A real ingest app and real sidecars in one process (:mod:`budget_harness`), in front of a
provider that spends the most each call allows: ``max_tokens`` times ``n`` output tokens
(``DEFAULT_OUTPUT`` when the call states no maximum), and as many input tokens as the
request has bytes / 4. It keeps the truth in ``spent``; the budget must hold against it.

- racing: many concurrent calls through two replicas of the agent;
- restarting its sidecar: the sidecar is killed (no goodbye) and started again, repeatedly;
- lying about usage: a stream that carries no usage, ``n`` to multiply the output, a
  ``max_tokens`` that is not a number, a model a cost budget has no price for, and the
  agent's own reports (which never touch a budget).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from budget_harness import NAMESPACE, POLICY, BudgetWorld, chat
from sidecar_fakes import Upstream, serve

from promethios.ingest.budgetcatalog import AGENT_KIND, Owner

DEFAULT_OUTPUT = 300
OWNER = Owner(AGENT_KIND, NAMESPACE, "agent-1")


@dataclass
class GreedyProvider(Upstream):
    """Spends the most a call allows and reports it (unless streaming without usage)."""

    spent: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append((request.path, dict(request.headers), body))
        cap = body.get("max_tokens")
        out = (cap if isinstance(cap, int) else DEFAULT_OUTPUT) * int(body.get("n", 1))
        inputs = len(raw) // 4
        self.spent.append(inputs + out)
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for _ in range(out // 10):  # ten bytes, at least one token each ... at most ten
                chunk = {"choices": [{"index": 0, "delta": {"content": "x" * 10}}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            return response
        usage = {"prompt_tokens": inputs, "completion_tokens": out}
        return web.json_response(
            {"choices": [{"index": 0, "message": {"content": "ok"}}], "usage": usage}
        )


@pytest.fixture
async def provider() -> AsyncIterator[GreedyProvider]:
    fake = GreedyProvider()
    fake.server = await serve(fake.handle)
    yield fake
    await fake.server.close()


@pytest.fixture
async def make_world(tmp_path: Path, provider: GreedyProvider) -> AsyncIterator[Any]:
    worlds: list[BudgetWorld] = []

    async def factory(budgets: list[dict[str, Any]], **spec: Any) -> BudgetWorld:
        world = BudgetWorld(tmp_path, provider, {"budgets": budgets, **spec})
        await world.start_ingest()
        worlds.append(world)
        return world

    yield factory
    for world in worlds:
        await world.close()


async def test_racing_replicas_cannot_spend_past_the_limit(
    make_world: Any, provider: GreedyProvider
) -> None:
    world = await make_world([{"name": "tok", "window": "Day", "tokens": 20_000}])
    await world.start_ingest()  # a second ingest replica, over the same stored usage
    replicas = [await world.sidecar(ingest=0), await world.sidecar(ingest=1)]
    await asyncio.gather(*(chat(replicas[i % 2], max_tokens=200, n=1 + i % 3) for i in range(120)))
    assert sum(provider.spent) <= 20_000
    assert sum(provider.spent) >= 20_000 * 0.5  # it did spend: the test raced for real


async def test_killing_and_restarting_the_sidecar_does_not_reset_the_budget(
    make_world: Any, provider: GreedyProvider
) -> None:
    world = await make_world([{"name": "daily", "window": "Day", "requests": 30}])
    for _ in range(6):
        sidecar = await world.sidecar()
        await asyncio.gather(*(chat(sidecar) for _ in range(10)))
        await sidecar.stop()  # killed: no lease closed, nothing given back
    assert len(provider.requests) <= 30
    ledger = world.usage(OWNER)["daily"]
    assert ledger.used.requests + ledger.reserved().requests <= 30


async def test_a_stream_without_usage_is_charged_no_less_than_it_spent(
    make_world: Any, provider: GreedyProvider
) -> None:
    world = await make_world([{"name": "tok", "window": "Day", "tokens": 15_000}])
    sidecar = await world.sidecar()
    for _ in range(40):
        await chat(sidecar, max_tokens=500, stream=True)
    assert sum(provider.spent) <= 15_000
    await sidecar.close_leases()
    assert world.usage(OWNER)["tok"].used.tokens >= sum(provider.spent)


async def test_output_multipliers_and_bogus_maxima_are_reserved_for(
    make_world: Any, provider: GreedyProvider
) -> None:
    budget = {"name": "tok", "window": "Day", "tokens": 10_000}
    world = await make_world([budget], budgetOptions={"outputTokensPerCall": DEFAULT_OUTPUT})
    sidecar = await world.sidecar()
    tries = [{"max_tokens": 100, "n": 20}, {"max_tokens": "9999"}, {"max_tokens": -1, "n": 4}]
    for i in range(30):
        await chat(sidecar, **tries[i % 3])
    assert sum(provider.spent) <= 10_000


async def test_a_model_without_a_price_cannot_dodge_a_cost_budget(
    make_world: Any, provider: GreedyProvider
) -> None:
    pricing = {"models": [{"model": "gpt-test", "inputPerMillion": 1000, "outputPerMillion": 1000}]}
    world = await make_world([{"name": "usd", "cost": 1.0}], pricing=pricing)
    sidecar = await world.sidecar()
    status, body, _ = await chat(sidecar, model="free-model")
    assert status == 403 and body["error"]["code"] == "budget.unpriced"
    while (await chat(sidecar, max_tokens=50))[0] == 200:
        pass
    assert sum(provider.spent) * 1000 <= 1_000_000  # micro-units: 1.0 of the currency
    assert all(b["model"] == "gpt-test" for _, _, b in provider.requests)


async def test_the_agents_own_reports_never_touch_a_budget(
    make_world: Any, provider: GreedyProvider
) -> None:
    world = await make_world([{"name": "daily", "window": "Day", "requests": 3}])
    sidecar = await world.sidecar()
    url = f"http://127.0.0.1:{sidecar.agent_port}/api/v1/governance/metrics"
    lie = {"agentId": f"{NAMESPACE}/agent-1", "governanceIdentity": "gid-agent-1",
           "metrics": {"trustScore": 1, "interactions": 0, "responseTime": 0, "violations": []},
           "timestamp": "2025-01-01T00:00:00Z", "usage": {"tokens": -10**9}}  # fmt: skip
    async with aiohttp.ClientSession() as session, session.post(url, json=lie) as response:
        assert response.status < 300
    statuses = [(await chat(sidecar))[0] for _ in range(5)]
    assert statuses.count(200) == 3 and len(provider.requests) == 3
    assert f"{POLICY}/daily" in sidecar.state.budgets.pools
