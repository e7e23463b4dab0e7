"""The ingest HTTP API through aiohttp's test client, with an in-memory status sink."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fakes import (
    AGENT,
    IDENTITY,
    KEY,
    OTHER_KEY,
    Clock,
    MemorySink,
    agent_config,
    headers,
    make_service,
)

from promethios.ingest.app import build_app

HEARTBEAT = {
    "agentId": AGENT,
    "status": "active",
    "uptime": 12.5,
    "lastActivity": "2024-05-01T10:00:00Z",
}
METRICS = {
    "agentId": AGENT,
    "governanceIdentity": IDENTITY,
    "metrics": {"trustScore": 92, "violations": [], "interactions": 10, "responseTime": 120.5},
    "timestamp": "2024-05-01T10:00:00Z",
}
VIOLATION = {
    "agentId": AGENT,
    "violation": {"type": "pii", "severity": "high", "description": "email", "context": {"f": "x"}},
}

Client = TestClient[Any, Any]


async def post(client: Client, path: str, body: Any, **extra: str) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    hdrs = {**headers(), "Content-Type": "application/json", **extra}
    response = await client.post(path, data=data, headers=hdrs)
    text = await response.text()
    return response.status, (json.loads(text) if text.startswith("{") else {"raw": text})


async def test_seed_payloads_accepted(client: Client, sink: MemorySink) -> None:
    assert (await post(client, "/api/v1/agents/heartbeat", HEARTBEAT))[0] == 202
    assert (await post(client, "/api/v1/governance/metrics", METRICS))[0] == 202
    code, body = await post(client, "/api/v1/governance/violations", VIOLATION)
    assert (code, body["accepted"]) == (200, 1)
    status = sink.last[AGENT]
    assert status["governance"]["violations"]["high"] == 1  # written before the 200
    assert status["governance"]["reportedTrustScore"] == 0.92
    assert status["heartbeat"]["state"] == "active"


BAD_INPUTS = [
    # (name, path, body, extra headers, code, field or message fragment)
    ("not json", "/api/v1/agents/heartbeat", b"{not json", {}, 400, "invalid_json"),
    ("empty body", "/api/v1/agents/heartbeat", b"", {}, 400, "invalid_json"),
    ("array body", "/api/v1/agents/heartbeat", [], {}, 422, "body"),
    (
        "missing status",
        "/api/v1/agents/heartbeat",
        {**HEARTBEAT, "status": None},
        {},
        422,
        "status",
    ),
    ("bad status", "/api/v1/agents/heartbeat", {**HEARTBEAT, "status": "dead"}, {}, 422, "status"),
    ("negative uptime", "/api/v1/agents/heartbeat", {**HEARTBEAT, "uptime": -1}, {}, 422, "uptime"),
    (
        "bad time",
        "/api/v1/agents/heartbeat",
        {**HEARTBEAT, "lastActivity": "yesterday"},
        {},
        422,
        "lastActivity",
    ),
    (
        "bad agent id",
        "/api/v1/agents/heartbeat",
        {**HEARTBEAT, "agentId": "NOPE"},
        {},
        422,
        "agentId",
    ),
    (
        "other agent id",
        "/api/v1/agents/heartbeat",
        {**HEARTBEAT, "agentId": "team-a/other"},
        {},
        403,
        "agentId",
    ),
    (
        "trust too high",
        "/api/v1/governance/metrics",
        {**METRICS, "metrics": {**METRICS["metrics"], "trustScore": 101}},
        {},
        422,
        "metrics.trustScore",
    ),
    (
        "trust string",
        "/api/v1/governance/metrics",
        {**METRICS, "metrics": {**METRICS["metrics"], "trustScore": "high"}},
        {},
        422,
        "metrics.trustScore",
    ),
    (
        "wrong identity in body",
        "/api/v1/governance/metrics",
        {**METRICS, "governanceIdentity": "x"},
        {},
        403,
        "governanceIdentity",
    ),
    (
        "bad severity",
        "/api/v1/governance/violations",
        {**VIOLATION, "violation": {**VIOLATION["violation"], "severity": "huge"}},
        {},
        422,
        "violation.severity",
    ),
    (
        "both forms",
        "/api/v1/governance/violations",
        {**VIOLATION, "violations": [VIOLATION["violation"]]},
        {},
        422,
        "exactly one",
    ),
    ("neither form", "/api/v1/governance/violations", {"agentId": AGENT}, {}, 422, "exactly one"),
    (
        "empty batch",
        "/api/v1/governance/violations",
        {"agentId": AGENT, "violations": []},
        {},
        422,
        "violations",
    ),
    (
        "huge context",
        "/api/v1/governance/violations",
        {**VIOLATION, "violation": {**VIOLATION["violation"], "context": "x" * 5000}},
        {},
        422,
        "violation.context",
    ),
    (
        "bad idempotency header",
        "/api/v1/agents/heartbeat",
        HEARTBEAT,
        {"Idempotency-Key": "a b"},
        422,
        "header.Idempotency-Key",
    ),
    (
        "bad idempotency body",
        "/api/v1/agents/heartbeat",
        {**HEARTBEAT, "idempotencyKey": "☃"},
        {},
        422,
        "idempotencyKey",
    ),
    (
        "wrong content type",
        "/api/v1/agents/heartbeat",
        HEARTBEAT,
        {"Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "too large",
        "/api/v1/agents/heartbeat",
        b"{" + b" " * 70_000 + b"}",
        {},
        413,
        "payload_too_large",
    ),
    (
        "missing key",
        "/api/v1/agents/heartbeat",
        HEARTBEAT,
        {"Authorization": ""},
        401,
        "unauthenticated",
    ),
    (
        "unknown key",
        "/api/v1/agents/heartbeat",
        HEARTBEAT,
        {"Authorization": "Bearer zzz"},
        401,
        "unknown",
    ),
    (
        "key of other agent",
        "/api/v1/agents/heartbeat",
        HEARTBEAT,
        {"Authorization": f"Bearer {OTHER_KEY}"},
        403,
        "forbidden",
    ),
    (
        "wrong governance id",
        "/api/v1/agents/heartbeat",
        HEARTBEAT,
        {"X-Governance-ID": "nope"},
        403,
        "forbidden",
    ),
    ("unknown route", "/api/v1/nothing", HEARTBEAT, {}, 404, "not_found"),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "extra", "code", "needle"), BAD_INPUTS, ids=[r[0] for r in BAD_INPUTS]
)
async def test_bad_inputs(
    client: Client, name: str, path: str, body: Any, extra: dict[str, str], code: int, needle: str
) -> None:
    status, answer = await post(client, path, body, **extra)
    assert status == code, answer
    assert set(answer) >= {"error", "message", "fields"}
    assert needle in json.dumps(answer)
    assert KEY not in json.dumps(answer)


async def test_method_not_allowed_is_json(client: Client) -> None:
    response = await client.get("/api/v1/agents/heartbeat")
    assert response.status == 405
    assert (await response.json())["error"]


async def test_rate_limit_429_with_retry_after(clock: Clock, sink: MemorySink) -> None:
    service = make_service(clock, sink, rate_burst=2, rate_per_second=0.5)
    async with TestClient(TestServer(build_app(service))) as client:
        codes = [(await post(client, "/api/v1/agents/heartbeat", HEARTBEAT))[0] for _ in range(3)]
        response = await client.post("/api/v1/agents/heartbeat", json=HEARTBEAT, headers=headers())
        assert codes == [202, 202, 429]
        assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    await service.stop()


async def test_duplicate_violation_counted_once(client: Client, sink: MemorySink) -> None:
    first = await post(
        client, "/api/v1/governance/violations", VIOLATION, **{"Idempotency-Key": "abc"}
    )
    second = await post(
        client, "/api/v1/governance/violations", VIOLATION, **{"Idempotency-Key": "abc"}
    )
    assert first == (200, {"accepted": 1, "duplicates": 0})
    assert second == (200, {"accepted": 0, "duplicates": 1})
    assert sink.last[AGENT]["governance"]["violations"]["total"] == 1


async def test_batch_and_concurrent_violations_coalesce(client: Client, sink: MemorySink) -> None:
    batch = {"agentId": AGENT, "violations": [VIOLATION["violation"]] * 3}
    before = sink.writes
    results = await asyncio.gather(
        *[post(client, "/api/v1/governance/violations", batch) for _ in range(10)]
    )
    assert all(code == 200 for code, _ in results)
    assert sink.last[AGENT]["governance"]["violations"]["total"] == 30
    assert sink.writes - before < 10  # concurrent reports shared writes


async def test_violation_not_acknowledged_when_write_fails(clock: Clock, sink: MemorySink) -> None:
    service = make_service(clock, sink, status_write_timeout_seconds=2.0)
    sink.code = 500
    async with TestClient(TestServer(build_app(service))) as client:
        code, body = await post(
            client, "/api/v1/governance/violations", VIOLATION, **{"Idempotency-Key": "k1"}
        )
        assert code == 503 and body["error"] == "status_write_failed"
        sink.code = 200
        code, body = await post(
            client, "/api/v1/governance/violations", VIOLATION, **{"Idempotency-Key": "k1"}
        )
        assert code == 200 and body["duplicates"] == 1  # recorded once, now written
        assert sink.last[AGENT]["governance"]["violations"]["total"] == 1
    await service.stop()


async def test_heartbeats_do_not_map_to_writes(clock: Clock, sink: MemorySink) -> None:
    service = make_service(clock, sink, flush_interval_seconds=30.0)
    async with TestClient(TestServer(build_app(service))) as client:
        await service.idle()
        start = sink.writes_of.get(AGENT, 0)
        for _i in range(60):  # one heartbeat a second for a minute
            clock.now += 1
            service.writer.tick()
            assert (await post(client, "/api/v1/agents/heartbeat", HEARTBEAT))[0] == 202
            await service.idle()
        writes = sink.writes_of[AGENT] - start  # (the silent other agent goes stale meanwhile)
        # the first heartbeat (a state change) only: timestamps alone wait 120 s
        assert writes == 1, writes
        # a state change is written at once
        before = sink.writes
        await post(client, "/api/v1/agents/heartbeat", {**HEARTBEAT, "status": "error"})
        await service.idle()
        assert sink.writes == before + 1
    await service.stop()


async def test_summary_requires_read_token_and_aggregates(client: Client) -> None:
    await post(client, "/api/v1/agents/heartbeat", HEARTBEAT)
    await post(client, "/api/v1/governance/violations", VIOLATION)
    assert (await client.get("/api/v1/governance/summary")).status == 401
    bad = await client.get("/api/v1/governance/summary", headers={"Authorization": "Bearer " + KEY})
    assert bad.status == 401
    auth = {"Authorization": "Bearer read-secret"}
    assert (
        await client.get("/api/v1/governance/summary?range=forever", headers=auth)
    ).status == 422
    response = await client.get("/api/v1/governance/summary?range=1h", headers=auth)
    summary = await response.json()
    assert summary["fleet"]["agents"]["active"] == 1
    assert summary["fleet"]["violations"]["bySeverity"]["high"] == 1
    assert {a["agentId"] for a in summary["agents"]} == {AGENT, "team-a/other"}


async def test_openapi_health_ready_metrics(client: Client, metrics_client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert "/api/v1/agents/heartbeat" in doc["paths"]
    assert "HeartbeatReport" in doc["components"]["schemas"]
    assert "trustScore" in json.dumps(doc["components"]["schemas"]["GovernanceMetrics"])
    assert (await metrics_client.get("/healthz")).status == 200
    assert (await metrics_client.get("/readyz")).status == 200
    await post(client, "/api/v1/governance/violations", VIOLATION)
    text = await (await metrics_client.get("/metrics")).text()
    assert (
        'promethios_violations_total{name="support-bot",namespace="team-a",'
        'severity="high",type="pii"} 1.0' in text
    )
    assert "promethios_agent_trust_score" in text
    assert 'promethios_ingest_requests_total{code="200",endpoint="violations"}' in text


async def test_metrics_and_probes_are_not_on_the_report_listener(
    client: Client, metrics_client: Client
) -> None:
    """``/metrics`` names every namespace's agents: never where the agents report."""
    for path in ("/metrics", "/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"] == "not_found"
    for path in ("/api/v1/agents/heartbeat", "/api/v1/governance/violations"):
        assert (await metrics_client.post(path, json={})).status == 404, path
    assert (await metrics_client.get("/api/v1/governance/summary")).status == 404


async def test_events_aggregated_and_context_free(clock: Clock, sink: MemorySink) -> None:
    service = make_service(clock, sink)
    async with TestClient(TestServer(build_app(service))) as client:
        for _ in range(3):
            await post(client, "/api/v1/governance/violations", VIOLATION)
        await service.idle()
    events = service._event_sink  # the MemoryEvents fake
    created = [e for e in events.created if e["reason"] == "PolicyViolation"]  # type: ignore[union-attr]
    assert len(created) == 1 and len(events.patched) == 2  # type: ignore[union-attr]
    # 3 high violations take trust from 1.0 to 0.55, below 0.7: one PolicyBreach event
    assert [e["reason"] for e in events.created].count("PolicyBreach") == 1  # type: ignore[union-attr]
    assert '"f"' not in json.dumps(events.created)  # type: ignore[union-attr]
    await service.stop()


async def test_suspend_on_critical(clock: Clock, sink: MemorySink) -> None:
    service = make_service(clock, sink)
    service.upsert_agent(agent_config("team-a", "support-bot", on_breach="Suspend"))
    async with TestClient(TestServer(build_app(service))) as client:
        critical = {**VIOLATION, "violation": {**VIOLATION["violation"], "severity": "critical"}}
        assert (await post(client, "/api/v1/governance/violations", critical))[0] == 200
    enforcement = sink.last[AGENT]["enforcement"]
    assert (enforcement["action"], enforcement["breach"]) == ("Suspended", 1)
    conditions = {c["type"]: c for c in sink.last[AGENT]["conditions"]}
    assert conditions["PolicyCompliant"]["reason"] == "CriticalViolation"
    await service.stop()


# -- fuzz: never a 500 ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def mutate(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(sorted(base))
    return st.one_of(
        json_values,
        st.builds(lambda k, v: {**base, k: v}, keys, json_values),
        st.builds(lambda k: {x: y for x, y in base.items() if x != k}, keys),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        ["/api/v1/agents/heartbeat", "/api/v1/governance/metrics", "/api/v1/governance/violations"]
    ),
    body=st.one_of(mutate(HEARTBEAT), mutate(METRICS), mutate(VIOLATION), st.binary(max_size=64)),
    idem=st.one_of(
        st.none(), st.text(max_size=10).filter(lambda s: "\n" not in s and "\r" not in s)
    ),
)
def test_fuzz_never_500(path: str, body: Any, idem: str | None) -> None:
    async def run() -> int:
        service = make_service(Clock(), MemorySink(), rate_burst=10_000)
        async with TestClient(TestServer(build_app(service))) as client:
            extra = {"Idempotency-Key": idem} if idem is not None else {}
            data = body if isinstance(body, bytes) else json.dumps(body)
            try:
                response = await client.post(
                    path,
                    data=data,
                    headers={**headers(), "Content-Type": "application/json", **extra},
                )
            except ValueError:
                await service.stop()
                return 0  # the client refused to send an invalid header
            status = response.status
            await response.read()
        await service.stop()
        return status

    assert asyncio.run(run()) < 500


async def test_summary_takes_a_kubernetes_token_when_the_composition_wires_one(
    clock: Clock, sink: MemorySink
) -> None:
    """In-process mode has no read token: a Kubernetes token sees only its namespaces."""
    from promethios.ingest.app import build_app

    service = make_service(clock, sink)
    service.upsert_agent(agent_config("team-b", "hidden"))
    seen: list[tuple[str, set[str]]] = []

    async def auth(token: str, namespaces: set[str]) -> set[str] | None:
        seen.append((token, namespaces))
        return {"team-a"} if token == "k8s-token" else None

    async with TestClient(TestServer(build_app(service, auth))) as client:
        ok = await client.get(
            "/api/v1/governance/summary?range=1h",
            headers={"Authorization": "Bearer k8s-token"},
        )
        body = await ok.json()
        assert ok.status == 200
        assert [a["agentId"] for a in body["agents"]] == ["team-a/other", "team-a/support-bot"]
        wrong = await client.get(
            "/api/v1/governance/summary", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status == 401
        assert (await client.get("/api/v1/governance/summary")).status == 401
    assert seen[0] == ("k8s-token", {"team-a", "team-b"})
    await service.stop()
