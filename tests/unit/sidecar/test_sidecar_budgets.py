"""Budgets end to end in one process: real sidecars, a real ingest app, the fake provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from budget_harness import NAMESPACE, POLICY, BudgetWorld, calls, chat
from sidecar_fakes import Upstream, serve

from promethios.ingest.budgetcatalog import AGENT_KIND, POLICY_KIND, Owner

AGENT_OWNER = Owner(AGENT_KIND, NAMESPACE, "agent-1")
POLICY_OWNER = Owner(POLICY_KIND, NAMESPACE, POLICY)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream(usage={"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30})
    fake.server = await serve(fake.handle)
    yield fake
    await fake.server.close()


async def world_of(
    tmp_path: Path, upstream: Upstream, budgets: list[dict[str, Any]]
) -> BudgetWorld:
    world = BudgetWorld(tmp_path, upstream, {"budgets": budgets})
    await world.start_ingest()
    return world


async def test_requests_budget_is_exact_and_the_refusal_says_when(
    tmp_path: Path, upstream: Upstream
) -> None:
    world = await world_of(tmp_path, upstream, [{"name": "daily", "window": "Day", "requests": 5}])
    sidecar = await world.sidecar()
    assert sorted(await calls(sidecar, 8)) == [200] * 5 + [429] * 3
    status, body, headers = await chat(sidecar)
    assert status == 429 and body["error"]["code"] == "budget.exhausted"
    assert body["error"]["rule"] == "budgets"
    assert 0 < int(headers["Retry-After"]) <= 86_400
    assert len(upstream.requests) == 5
    await sidecar.close_leases()  # reports what it spent since its last exchange
    ledger = world.usage(AGENT_OWNER)["daily"]
    assert (ledger.used.requests, ledger.used.tokens) == (5, 150)
    assert ledger.by_model["gpt-test"].input == 60
    await world.close()


async def test_tokens_are_charged_from_the_providers_usage(
    tmp_path: Path, upstream: Upstream
) -> None:
    world = await world_of(
        tmp_path, upstream, [{"name": "tok", "window": "Hour", "tokens": 10_000}]
    )
    sidecar = await world.sidecar()
    assert await calls(sidecar, 10, max_tokens=50) == [200] * 10
    await sidecar.close_leases()
    ledger = world.usage(AGENT_OWNER)["tok"]
    assert ledger.used.tokens == 300 and (ledger.input_tokens, ledger.output_tokens) == (120, 180)
    assert ledger.reserved().tokens == 0  # closing gave the rest back
    metrics = sidecar.state.metrics.registry
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-test",
    }
    assert (
        metrics.get_sample_value(
            "gen_ai_client_token_usage_sum", {**labels, "gen_ai_token_type": "output"}
        )
        == 180
    )
    assert (
        metrics.get_sample_value(
            "gen_ai_client_operation_duration_seconds_count", {**labels, "error_type": ""}
        )
        == 10
    )
    assert metrics.get_sample_value("promethios_sidecar_governance_overhead_seconds_count") == 10
    await world.close()


async def test_a_stream_without_usage_is_charged_its_upper_bound(
    tmp_path: Path, upstream: Upstream
) -> None:
    world = await world_of(tmp_path, upstream, [{"name": "tok", "tokens": 100_000}])
    sidecar = await world.sidecar()
    upstream.stream_chunks = ["Hello ", "wörld"]
    status, body, _ = await chat(sidecar, stream=True)
    assert status == 200 and "[DONE]" in body
    await sidecar.close_leases()
    ledger = world.usage(AGENT_OWNER)["tok"]
    sent = len(upstream.requests[-1][2].__repr__())  # about the request's size
    assert ledger.output_tokens >= len("Hello wörld".encode())
    assert ledger.input_tokens > 0 and ledger.input_tokens < sent * 2
    await world.close()


async def test_shared_budget_holds_two_agents_and_lives_on_the_policy(
    tmp_path: Path, upstream: Upstream
) -> None:
    world = BudgetWorld(tmp_path, upstream, {"budgets": [
        {"name": "team", "scope": "Policy", "requests": 12}]})  # fmt: skip
    await world.start_ingest(("agent-1", "agent-2"))
    one, two = await world.sidecar("agent-1"), await world.sidecar("agent-2")
    assert (await calls(one, 10)).count(200) == 10
    held = await calls(two, 10)
    assert held.count(200) < 2  # one holds back what it has been granted and not spent
    await one.close_leases()  # ... until it gives it back; two asks again 10 s later
    real = two.state.clock
    two.state.clock = lambda: real() + 11
    assert held.count(200) + (await calls(two, 10)).count(200) == 2
    assert len(upstream.requests) == 12
    await two.close_leases()
    assert world.usage(POLICY_OWNER)["team"].used.requests == 12
    assert AGENT_OWNER not in world.store.objects
    await world.close()


async def test_audit_mode_reports_but_lets_calls_through(
    tmp_path: Path, upstream: Upstream
) -> None:
    world = await world_of(tmp_path, upstream, [{"name": "daily", "requests": 2}])
    sidecar = await world.sidecar(mode="audit")
    assert await calls(sidecar, 4) == [200] * 4
    violations = sidecar.state.spool.pending(10)
    assert [v["type"] for _, v in violations] == ["budget.exhausted"]
    await sidecar.close_leases()
    assert world.usage(AGENT_OWNER)["daily"].used.requests == 4
    await world.close()


async def test_an_unreachable_ingest_fails_open_on_the_last_lease_only(
    tmp_path: Path, upstream: Upstream
) -> None:
    world = await world_of(tmp_path, upstream, [{"name": "daily", "requests": 1000}])
    sidecar = await world.sidecar()
    assert (await chat(sidecar))[0] == 200
    pool = sidecar.state.budgets.pools[f"{POLICY}/daily"]
    lease = pool.granted[1] - pool.consumed[1]
    assert 0 < lease < 1000
    await world.stop_ingest(0)
    statuses = await calls(sidecar, lease + 5)
    assert statuses.count(200) == lease
    status, body, _ = await chat(sidecar)
    assert status == 503 and body["error"]["code"] == "budget.unavailable"
    assert len(upstream.requests) == lease + 1
    await world.close()


async def test_fail_closed_refuses_once_the_lease_is_too_old(
    tmp_path: Path, upstream: Upstream
) -> None:
    budget = {"name": "daily", "requests": 1000, "whenIngestUnreachable": "FailClosed"}
    world = await world_of(tmp_path, upstream, [budget])
    sidecar = await world.sidecar()
    assert (await chat(sidecar))[0] == 200
    await world.stop_ingest(0)
    assert (await chat(sidecar))[0] == 200  # the lease is young
    real = sidecar.state.clock
    sidecar.state.clock = lambda: real() + 61  # past leaseSeconds (60)
    status, body, _ = await chat(sidecar)
    assert status == 503 and body["error"]["code"] == "budget.unavailable"
    await world.close()
