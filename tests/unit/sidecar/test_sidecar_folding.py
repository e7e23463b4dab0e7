"""The agent's self-reports folded into the sidecar's own, and its violation budget."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from sidecar_fakes import Ingest, SidecarFactory

from promethios.api.wire import PATH_VIOLATIONS, HeartbeatReport, MetricsReport
from promethios.sidecar.folding import AgentReports, TokenBucket

NOW_WALL = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


def beat(status: str = "active", last: str = "2026-05-31T00:00:00Z") -> HeartbeatReport:
    body = {"agentId": "a/b", "status": status, "uptime": 1, "lastActivity": last}
    return HeartbeatReport.model_validate(body)


def metrics(trust: float, interactions: int = 0) -> MetricsReport:
    body = {
        "agentId": "a/b",
        "governanceIdentity": "g",
        "timestamp": "2026-05-31T00:00:00Z",
        "metrics": {"trustScore": trust, "interactions": interactions, "responseTime": 7},
    }
    return MetricsReport.model_validate(body)


def test_token_bucket_refills_and_refuses_what_it_can_never_hold() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0)
    assert bucket.take(4, now=0.0) is None
    assert bucket.take(1, now=0.0) == 0.5
    assert bucket.take(1, now=0.5) is None
    assert bucket.take(5, now=10.0) == math.inf


def test_status_is_the_agents_while_fresh_and_a_change_asks_for_a_heartbeat() -> None:
    agent = AgentReports()
    assert agent.status_for(0.0, 30) == "active"
    assert agent.fold_heartbeat(beat("error"), now=100.0, wall_now=NOW_WALL)
    assert not agent.fold_heartbeat(beat("error"), now=101.0, wall_now=NOW_WALL)
    assert agent.status_for(150.0, 30) == "error"
    assert agent.status_for(101.0 + 91, 30) == "active"  # three intervals without news


def test_bogus_last_activity_moves_nothing() -> None:
    with pytest.raises(ValidationError, match="lastActivity"):  # the wire refuses year 1
        beat(last="0001-01-01T00:00:00+14:00")
    agent = AgentReports()
    agent.fold_heartbeat(beat(last="2000-01-01T00:00:00Z"), 0.0, NOW_WALL)
    own = NOW_WALL - 60
    assert agent.last_activity(own) == own  # a date long past cannot move it back
    agent.fold_heartbeat(beat(last="2099-01-01T00:00:00Z"), 0.0, NOW_WALL)
    assert agent.last_activity(own) == NOW_WALL  # nor past now
    agent.fold_heartbeat(beat(last="2026-05-31T23:59:30Z"), 0.0, NOW_WALL)
    assert agent.last_activity(own) == NOW_WALL


def test_agent_can_lower_its_trust_never_raise_it() -> None:
    agent = AgentReports()
    assert agent.trust(80.0) == 80.0
    agent.fold_metrics(metrics(100, interactions=9))
    assert agent.trust(80.0) == 80.0
    agent.fold_metrics(metrics(0.5))  # 0-1 scale, as the ingest reads it
    assert agent.trust(80.0) == 50.0
    assert agent.interactions == 9  # the larger count is kept
    assert agent.take_response_time(3.0) == 7 and agent.take_response_time(3.0) == 3.0


async def test_self_reported_violations_over_budget_get_429_and_come_after_findings(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    sidecar = await make_sidecar(limits={"agentViolationsPerMinute": 6})  # burst 10
    assert sidecar.delivery is not None
    one: dict[str, Any] = {"type": "self.report", "severity": "critical", "description": "d"}
    url = f"http://127.0.0.1:{sidecar.agent_port}{PATH_VIOLATIONS}"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"violations": [one] * 10}) as response:
            assert response.status == 202
        async with session.post(url, json={"violation": one}) as response:
            assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
            assert "agentViolationsPerMinute" in (await response.json())["message"]
        chat = {"model": "m", "messages": [{"role": "user", "content": "mail a@b.io"}]}
        async with session.post(
            f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions", json=chat
        ) as response:
            assert response.status == 200
    assert await sidecar.delivery.deliver_once() == ("progress", None)
    first = ingest.bodies(PATH_VIOLATIONS)[0]
    assert first["violation"]["type"] == "pii.email"  # the finding goes first
    assert await sidecar.delivery.deliver_once() == ("progress", None)
    assert len(ingest.bodies(PATH_VIOLATIONS)[1]["violations"]) == 10
