"""Budgets in the ingest API: replicas racing on one ledger, replays, alerts once, the route."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ingest_fakes import AGENT, KEY, Clock, MemoryEvents, MemorySink, agent_config, headers

from promethios.api.allowance import PATH_ALLOWANCE, AllowanceRequest, AllowanceResponse
from promethios.ingest.alertformat import Alert
from promethios.ingest.app import SERVICE_KEY, build_app
from promethios.ingest.budgetcatalog import AGENT_KIND, POLICY_KIND, Owner
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings
from promethios.ingest.usagecodec import decode_usage
from promethios.ingest.usagewriter import MemoryUsageStore
from promethios.ingest.writer import WriteResult

POLICY_OWNER = Owner(POLICY_KIND, "team-a", "policy")
BOT_OWNER = Owner(AGENT_KIND, "team-a", "support-bot")


class RacingStore(MemoryUsageStore):
    """Writes pause before their compare-and-set, so concurrent replicas really race."""

    def __init__(self, delay: float = 0.002) -> None:
        super().__init__()
        self.delay = delay
        self.conflicts = 0
        self.code = 200

    async def write_usage_if(
        self, owner: Owner, usage: dict[str, Any], resource_version: str
    ) -> WriteResult:
        await asyncio.sleep(random.uniform(0, self.delay))
        if self.code >= 300:
            return WriteResult(self.code)
        result = await super().write_usage_if(owner, usage, resource_version)
        self.conflicts += result.code == 409
        return result


def policy(budgets: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a", "name": "policy", "resourceVersion": "1"},
        "spec": {"budgets": budgets, **spec},
    }


def replica(clock: Clock, store: MemoryUsageStore, budgets: list[dict[str, Any]]) -> IngestService:
    service = IngestService(
        IngestSettings(allowance_rate_burst=10_000, allowance_rate_per_second=10_000.0),
        MemorySink(),
        event_sink=MemoryEvents(),
        clock=clock,
        usage_store=store,
    )
    service.keystore.add_key(KEY, AGENT, "gid-1234")
    for name in ("support-bot", "other"):
        service.upsert_agent(agent_config("team-a", name, alert_sinks=("hook",)))
    service.policy_seen(policy(budgets))
    service.ready.set()
    return service


def request(agent: str, instance: str, **lease: Any) -> AllowanceRequest:
    return AllowanceRequest.model_validate(
        {"agentId": f"team-a/{agent}", "instance": instance, "leases": [lease]}
    )


async def exchange(service: IngestService, agent: str, instance: str, **lease: Any) -> Any:
    config = service.agent(f"team-a/{agent}")
    assert config is not None
    answer = await service.allowance.exchange(config.config, request(agent, instance, **lease))
    return answer.leases[0]


def stored(store: MemoryUsageStore, owner: Owner) -> Any:
    return decode_usage(store.objects[owner]["status"]["usage"])


@pytest.fixture
def clock() -> Clock:
    return Clock(1_750_000_000.0)


async def test_replicas_racing_never_grant_more_than_the_limit(clock: Clock) -> None:
    store = RacingStore()
    shared = {"name": "team", "scope": "Policy", "window": "Day", "tokens": 1000}
    replicas = [replica(clock, store, [shared]), replica(clock, store, [shared])]
    ask = {"budget": "policy/team", "target": {"tokens": 300}}
    answers = await asyncio.gather(
        *(
            exchange(
                replicas[i % 2], ("support-bot", "other")[i % 3 % 2], f"instance{i:04d}", **ask
            )
            for i in range(12)
        )
    )
    ledger = stored(store, POLICY_OWNER)["team"]
    granted = {lid: lease.granted.tokens for lid, lease in ledger.leases.items()}
    assert sum(granted.values()) == 1000 == sum(a.granted.tokens for a in answers)
    assert sorted(a.granted.tokens for a in answers)[-3:] == [300, 300, 300]
    assert sum(a.exhausted for a in answers) >= 8
    assert store.conflicts > 0  # they did race

    # what one sidecar reports is counted once, however often and wherever it is replayed
    report = {
        "budget": "policy/team",
        "windowStart": answers[0].window_start,
        "usage": [{"model": "gpt", "inputTokens": 40, "outputTokens": 60, "requests": 2}],
    }
    winner = next(i for i, a in enumerate(answers) if a.granted.tokens == 300)
    agent = ("support-bot", "other")[winner % 3 % 2]
    await asyncio.gather(
        *(exchange(replicas[n % 2], agent, f"instance{winner:04d}", **report) for n in range(6))
    )
    ledger = stored(store, POLICY_OWNER)["team"]
    assert (ledger.used.tokens, ledger.used.requests) == (100, 2)
    assert ledger.used.tokens + ledger.reserved().tokens == 1000
    for service in replicas:
        await service.stop()


async def test_agent_budgets_are_kept_per_agent_on_the_agent(clock: Clock) -> None:
    store = MemoryUsageStore()
    own = {"name": "own", "scope": "Agent", "window": "Hour", "requests": 5}
    service = replica(clock, store, [own])
    bot = await exchange(
        service, "support-bot", "aaaaaaaa", budget="policy/own", target={"requests": 9}
    )
    other = await exchange(
        service, "other", "bbbbbbbb", budget="policy/own", target={"requests": 9}
    )
    assert bot.granted.requests == other.granted.requests == 5
    assert stored(store, BOT_OWNER)["own"].leases["support-bot.aaaaaaaa"].granted.requests == 5
    assert POLICY_OWNER not in store.objects
    unknown = await exchange(service, "other", "bbbbbbbb", budget="policy/nope")
    assert unknown.unknown
    await service.stop()


async def test_a_threshold_alerts_once_whichever_replica_crosses_it(clock: Clock) -> None:
    store = RacingStore()
    shared = {"name": "team", "scope": "Policy", "window": "Day", "requests": 100,
              "alertThresholds": [80]}  # fmt: skip
    replicas = [replica(clock, store, [shared]), replica(clock, store, [shared])]
    sent: list[tuple[Alert, tuple[str, ...], bool]] = []
    for service in replicas:
        service.alerts.submit = lambda alert, sinks, dedup=True: sent.append((alert, sinks, dedup))  # type: ignore[method-assign]
    first = await exchange(replicas[0], "support-bot", "aaaaaaaa", budget="policy/team",
                           target={"requests": 1})  # fmt: skip
    window = first.window_start
    # eight sidecars each report 11 requests at once, on alternating replicas: 88 %
    await asyncio.gather(
        *(
            exchange(replicas[i % 2], "other", f"instance{i:04d}", budget="policy/team",
                     windowStart=window,
                     usage=[{"model": "m", "inputTokens": 1, "outputTokens": 1, "requests": 11}])
            for i in range(8)
        )
    )  # fmt: skip
    assert stored(store, POLICY_OWNER)["team"].used.requests == 88
    assert len(sent) == 1
    alert, sinks, dedup = sent[0]
    assert (alert.kind, alert.type, sinks, dedup) == (
        "BudgetThreshold",
        "budget.team.80",
        ("hook",),
        False,
    )
    assert "reached 80% of its day limit (requests 88 of 100)" in alert.description
    for service in replicas:
        await service.stop()


@pytest.fixture
async def client(clock: Clock) -> AsyncIterator[tuple[TestClient[Any, Any], RacingStore]]:
    store = RacingStore(0.0)
    service = replica(clock, store, [{"name": "own", "tokens": 100}])
    async with TestClient(TestServer(build_app(service))) as test_client:
        yield test_client, store
    await service.stop()


async def test_the_route(client: tuple[TestClient[Any, Any], RacingStore]) -> None:
    http, store = client
    body = {
        "agentId": AGENT,
        "instance": "abcdefgh",
        "leases": [{"budget": "policy/own", "target": {"tokens": 40}}],
    }
    response = await http.post(PATH_ALLOWANCE, json=body, headers=headers())
    assert response.status == 200, await response.text()
    answer = AllowanceResponse.model_validate(await response.json())
    (info,) = answer.budgets
    assert (info.budget, info.scope, info.window, info.tokens, info.cost) == (
        "policy/own", "Agent", "Month", True, False
    )  # fmt: skip
    assert answer.leases[0].granted.tokens == 40
    bad = await http.post(PATH_ALLOWANCE, json={**body, "instance": "x"}, headers=headers())
    assert bad.status == 422 and "instance" in await bad.text()
    other = await http.post(
        PATH_ALLOWANCE, json={**body, "agentId": "team-a/other"}, headers=headers()
    )
    assert other.status == 403
    store.code = 500
    down = await http.post(PATH_ALLOWANCE, json=body, headers=headers())
    assert down.status == 503 and down.headers["Retry-After"] == "1"


async def test_no_answer_before_the_policies_are_loaded(
    client: tuple[TestClient[Any, Any], RacingStore],
) -> None:
    http, _ = client
    service = http.app[SERVICE_KEY]
    service.ready.clear()
    body = {"agentId": AGENT, "instance": "abcdefgh", "leases": []}
    response = await http.post(PATH_ALLOWANCE, json=body, headers=headers())
    assert response.status == 503 and "policies not loaded" in await response.text()
