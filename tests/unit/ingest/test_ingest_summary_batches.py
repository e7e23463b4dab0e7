"""The summary endpoint builds its document in batches: same document, loop not held."""

from __future__ import annotations

import asyncio
import json

import pytest
from ingest_fakes import agent_config

from promethios.api.wire import HeartbeatReport, PolicyViolation
from promethios.ingest import app as ingest_app
from promethios.ingest.aggregator import Aggregator
from promethios.ingest.state import AgentState
from promethios.ingest.summary import SummaryBuilder, fleet_summary, in_order

T0 = 1_700_000_000.0


def _fleet(count: int) -> list[AgentState]:
    """Agents with different states, trusts and violations (some stale, some not)."""
    agg = Aggregator()
    states = []
    for i in range(count):
        state = agg.upsert_agent(agent_config(f"ns{i % 3}", f"bot{i:03d}"), T0)
        if i % 4:
            report = HeartbeatReport.model_validate(
                {
                    "agentId": state.config.agent_id,
                    "status": "active" if i % 2 else "error",
                    "uptime": 5,
                    "lastActivity": "2024-01-01T00:00:00Z",
                }
            )
            agg.heartbeat(state, report, None, T0 + 100 + i)
        severities = ["low", "medium", "high", "critical"]
        violations = [
            PolicyViolation.model_validate(
                {
                    "type": f"t{n % 2}",
                    "severity": severities[(i + n) % 4],
                    "description": "d",
                    "idempotencyKey": f"v{i}-{n}",
                }
            )
            for n in range(i % 5)
        ]
        if violations:
            agg.violations(state, violations, None, T0 + 200 + i)
        states.append(state)
    return states


@pytest.mark.parametrize("batch", [1, 7, 200, 10_000])
def test_batches_make_the_same_document_as_one_go(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    states = _fleet(53)
    now = T0 + 160  # the heartbeated agents are fresh, the others stale
    monkeypatch.setattr(ingest_app, "SUMMARY_BATCH", batch)
    body = asyncio.run(ingest_app.build_summary(list(reversed(states)), 3600, now))
    expected = fleet_summary(states, 3600, now)
    assert json.loads(body) == json.loads(json.dumps(expected))
    assert expected["fleet"]["agents"]["total"] == 53
    assert 0 < expected["fleet"]["agents"]["stale"] < 53  # the fleet really varies
    assert expected["fleet"]["violations"]["total"] > 0


def test_an_empty_fleet_encodes_as_valid_json() -> None:
    document = json.loads(SummaryBuilder(3600, T0).encode())
    assert document["agents"] == []
    assert document["fleet"]["trust"] == {"min": None, "mean": None}
    assert document["fleet"]["agents"]["total"] == 0


def test_the_builder_lets_other_tasks_run_between_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report arriving while a big summary is built is handled before the summary ends."""
    states = _fleet(40)
    monkeypatch.setattr(ingest_app, "SUMMARY_BATCH", 5)
    seen_during: list[int] = []
    built: list[int] = []

    real_add = SummaryBuilder.add

    def counting_add(self: SummaryBuilder, batch: list[AgentState]) -> list[dict[str, object]]:
        entries = real_add(self, batch)
        built.append(len(entries))
        return entries

    monkeypatch.setattr(SummaryBuilder, "add", counting_add)

    async def other_task() -> None:
        for _ in range(3):
            seen_during.append(sum(built))
            await asyncio.sleep(0)

    async def main() -> bytes:
        summary = asyncio.create_task(ingest_app.build_summary(states, 3600, T0 + 600))
        other = asyncio.create_task(other_task())
        body, _ = await asyncio.gather(summary, other)
        return body

    body = asyncio.run(main())
    assert len(json.loads(body)["agents"]) == 40
    # The other task ran while agents were still unbuilt: not after the whole summary.
    assert any(0 < count < 40 for count in seen_during), seen_during


def test_summary_order_is_by_agent_id_whatever_the_input_order() -> None:
    states = _fleet(12)
    ids = [s.config.agent_id for s in in_order(reversed(states))]
    assert ids == sorted(ids)
