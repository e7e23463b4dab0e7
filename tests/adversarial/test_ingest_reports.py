"""The agent as attacker of the ingest API: no report it can send stops its governance.

The sidecar's key is the agent's to use (a compromised sidecar, or an agent that reads the
key some other way, can send anything). Whatever it sends:

- gets a 2xx, or a 4xx whose ``fields`` name the offending field (never a 5xx);
- never stops a later, valid violation from being recorded (the heartbeat-poison escape:
  ``lastActivity: 0001-01-01T00:00:00+14:00`` was accepted, and every later status write
  failed, so the agent could never be suspended);
- cannot starve its own violations by flooding heartbeats and metrics (rate limits apart);
- is read whole, however its bytes arrive over TCP.

The status sink here refuses what the API server would refuse (the CRD schema is generated
from the same models), so a body the real server would reject fails here too.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pydantic
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fakes import AGENT, IDENTITY, Clock, headers, make_service

from promethios.api.agentstatus import GovernedAgentStatus
from promethios.ingest.app import build_app
from promethios.ingest.service import IngestService

HEARTBEAT: dict[str, Any] = {
    "agentId": AGENT,
    "status": "active",
    "uptime": 12.5,
    "lastActivity": "2024-05-01T10:00:00Z",
}
METRICS: dict[str, Any] = {
    "agentId": AGENT,
    "governanceIdentity": IDENTITY,
    "metrics": {"trustScore": 92, "violations": [], "interactions": 10, "responseTime": 120.5},
    "timestamp": "2024-05-01T10:00:00Z",
}
VIOLATION: dict[str, Any] = {
    "agentId": AGENT,
    "violation": {"type": "pii.email", "severity": "medium", "description": "email"},
}
PATHS = {
    "heartbeat": "/api/v1/agents/heartbeat",
    "metrics": "/api/v1/governance/metrics",
    "violations": "/api/v1/governance/violations",
}


class SchemaSink:
    """A status sink that refuses, like the API server, a body the CRD schema refuses."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, Any]] = {}
        self.refused = 0

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        try:
            text = json.dumps(status, allow_nan=False)  # NaN/Infinity are not JSON
            GovernedAgentStatus.model_validate_json(text)
        except (ValueError, pydantic.ValidationError):
            self.refused += 1
            return 422
        self.last[f"{namespace}/{name}"] = json.loads(text)
        return 200


def recorded(sink: SchemaSink) -> int:
    return int(sink.last.get(AGENT, {}).get("governance", {}).get("violations", {}).get("total", 0))


async def send(client: TestClient[Any, Any], path: str, data: str | bytes) -> tuple[int, Any]:
    hdrs = {**headers(), "Content-Type": "application/json"}
    response = await client.post(path, data=data, headers=hdrs)
    text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


async def record_one(client: TestClient[Any, Any], sink: SchemaSink, key: str) -> None:
    """A valid violation is recorded: 200, and the stored total goes up by one."""
    before = recorded(sink)
    body = {**VIOLATION, "violation": {**VIOLATION["violation"], "idempotencyKey": key}}
    code, answer = await send(client, PATHS["violations"], json.dumps(body))
    assert code == 200, answer
    assert recorded(sink) == before + 1


def service_and_sink(**overrides: Any) -> tuple[IngestService, SchemaSink]:
    sink = SchemaSink()
    service = make_service(Clock(), sink, rate_burst=10_000, rate_per_second=10_000.0, **overrides)
    return service, sink


# -- 1. heartbeat poison ------------------------------------------------------------------


@pytest.mark.parametrize(
    "last_activity",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 once in UTC
        "9999-12-31T23:59:59-14:00",  # year 10000 once in UTC
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",  # before the epoch
    ],
)
async def test_a_poisoned_heartbeat_never_blocks_a_violation(last_activity: str) -> None:
    service, sink = service_and_sink()
    async with TestClient(TestServer(build_app(service))) as client:
        code, answer = await send(
            client, PATHS["heartbeat"], json.dumps({**HEARTBEAT, "lastActivity": last_activity})
        )
        if code >= 400:
            assert code == 422, answer
            assert [f["field"] for f in answer["fields"]] == ["lastActivity"], answer
        else:
            assert code == 202, answer
        await record_one(client, sink, "after-poison")
        assert sink.refused == 0, "the ingest wrote a status the API server would refuse"
    await service.stop()


# -- any value of any field ---------------------------------------------------------------

#: JSON values an attacker can put anywhere, including what Python's encoder allows and
#: JSON does not (NaN, Infinity), numbers past int64 and strings with lone surrogates.
WEIRD_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01",
            "1e309",
            "\ud800",
            "\u0000",
            "x" * 5000,
            "",
        ]
    ),
)
WEIRD = st.recursive(
    WEIRD_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)

#: Every field of every report, as a path into the body.
FIELDS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("heartbeat", HEARTBEAT, ("status",)),
    ("heartbeat", HEARTBEAT, ("uptime",)),
    ("heartbeat", HEARTBEAT, ("lastActivity",)),
    ("heartbeat", HEARTBEAT, ("idempotencyKey",)),
    ("metrics", METRICS, ("metrics", "trustScore")),
    ("metrics", METRICS, ("metrics", "interactions")),
    ("metrics", METRICS, ("metrics", "responseTime")),
    ("metrics", METRICS, ("metrics", "violations")),
    ("metrics", METRICS, ("metrics", "droppedViolations")),
    ("metrics", METRICS, ("metrics", "droppedViolationsBySeverity")),
    ("metrics", METRICS, ("timestamp",)),
    ("violations", VIOLATION, ("violation", "type")),
    ("violations", VIOLATION, ("violation", "severity")),
    ("violations", VIOLATION, ("violation", "description")),
    ("violations", VIOLATION, ("violation", "context")),
    ("violations", VIOLATION, ("violation", "timestamp")),
    ("violations", VIOLATION, ("violation", "idempotencyKey")),
]


def with_value(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy


def encode(body: dict[str, Any]) -> str:
    """What a hostile client sends: Python's encoder emits NaN/Infinity and lone surrogates."""
    return json.dumps(body, allow_nan=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(FIELDS), value=WEIRD, data=st.data())
async def test_any_value_of_any_field_is_answered_and_blocks_nothing(
    field: tuple[str, dict[str, Any], tuple[str, ...]], value: Any, data: st.DataObject
) -> None:
    kind, template, path = field
    service, sink = service_and_sink()
    async with TestClient(TestServer(build_app(service))) as client:
        code, answer = await send(client, PATHS[kind], encode(with_value(template, path, value)))
        assert code < 500, (code, answer)
        if code >= 400:
            assert isinstance(answer, dict), answer
            if code == 422:
                named = {f["field"] for f in answer["fields"]}
                assert named and all(name.startswith(tuple(path[:1])) for name in named), answer
            else:
                assert code in (400, 413), answer
        key = data.draw(st.sampled_from(["next-1", "next-2"]))
        await record_one(client, sink, key)
        assert sink.refused == 0, "the ingest wrote a status the API server would refuse"
    await service.stop()


async def test_non_finite_numbers_never_reach_the_status() -> None:
    service, sink = service_and_sink()
    async with TestClient(TestServer(build_app(service))) as client:
        for path, value in [(("uptime",), math.inf), (("uptime",), math.nan)]:
            code, answer = await send(
                client, PATHS["heartbeat"], encode(with_value(HEARTBEAT, path, value))
            )
            assert code in (400, 422), answer
        await record_one(client, sink, "finite")
    await service.stop()


# -- 2. violation starvation ----------------------------------------------------------------


async def test_a_flood_of_heartbeats_and_metrics_cannot_defer_a_violation() -> None:
    """Reports and violations have separate budgets: a chatty agent exhausts only its own."""
    sink = SchemaSink()
    service = make_service(Clock(), sink, rate_burst=5, rate_per_second=0.001)
    async with TestClient(TestServer(build_app(service))) as client:
        codes = [
            (await send(client, PATHS["heartbeat"], json.dumps(HEARTBEAT)))[0] for _ in range(20)
        ]
        codes += [(await send(client, PATHS["metrics"], json.dumps(METRICS)))[0] for _ in range(5)]
        assert codes.count(429) >= 15, codes  # the flood is throttled ...
        await record_one(client, sink, "not-starved")  # ... the violation is not
    await service.stop()


# -- 6. a body in several TCP pieces ----------------------------------------------------------


async def test_a_body_arriving_in_pieces_is_read_whole() -> None:
    service, sink = service_and_sink()
    server = TestServer(build_app(service))
    await server.start_server()
    try:
        body = json.dumps(
            {**VIOLATION, "violation": {**VIOLATION["violation"], "idempotencyKey": "pieces"}}
        ).encode()
        head = (
            f"POST {PATHS['violations']} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers().items())
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(head + body[:10])
        await writer.drain()
        # The attack's shape: the rest of the body comes later, in a second TCP segment.
        await asyncio.sleep(0.2)
        writer.write(body[10:])
        await writer.drain()
        status_line = (await reader.readline()).decode()
        writer.close()
        assert status_line.split()[1] == "200", status_line
        assert recorded(sink) == 1
    finally:
        await server.close()
        await service.stop()


# -- 14. keys from any labelled Secret --------------------------------------------------------


def key_secret(
    name: str = "support-bot-api-key",
    owner: dict[str, Any] | None = None,
    key: str = "forged-key",
) -> dict[str, Any]:
    """An api-key Secret as a namespace user could write it."""
    import base64
    import hashlib

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "team-a",
        "uid": f"secret-{name}",
        "labels": {
            "app.kubernetes.io/managed-by": "promethios-operator",
            "promethios.ai/component": "api-key",
            "promethios.ai/agent": "support-bot",
        },
        "annotations": {"promethios.ai/governance-identity": IDENTITY},
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "metadata": metadata,
        "data": {"apiKey": b64(key), "apiKeySha256": b64(hashlib.sha256(key.encode()).hexdigest())},
    }


OWNER = {
    "apiVersion": "governance.promethios.ai/v1alpha1",
    "kind": "GovernedAgent",
    "name": "support-bot",
    "uid": "uid-support-bot",
    "controller": True,
}


@pytest.mark.parametrize(
    "secret",
    [
        key_secret(name="my-own-secret", owner=OWNER),  # labelled, but not the agent's name
        key_secret(owner=None),  # the agent's name, but nobody owns it
        key_secret(owner={**OWNER, "uid": "uid-of-a-deleted-agent"}),  # another agent's
        key_secret(owner={**OWNER, "controller": False}),
        key_secret(owner={**OWNER, "kind": "ConfigMap"}),
    ],
    ids=["other-name", "no-owner", "other-uid", "not-controller", "other-kind"],
)
async def test_a_labelled_secret_the_operator_does_not_own_grants_nothing(
    secret: dict[str, Any],
) -> None:
    service, _ = service_and_sink()
    service.keystore.put_secret(secret)
    async with TestClient(TestServer(build_app(service))) as client:
        hdrs = {**headers(key="forged-key"), "Content-Type": "application/json"}
        response = await client.post(PATHS["heartbeat"], data=json.dumps(HEARTBEAT), headers=hdrs)
        assert response.status in (401, 403), await response.text()
    await service.stop()


async def test_the_operators_own_secret_is_accepted() -> None:
    service, _ = service_and_sink()
    service.keystore.put_secret(key_secret(owner=OWNER))
    async with TestClient(TestServer(build_app(service))) as client:
        hdrs = {**headers(key="forged-key"), "Content-Type": "application/json"}
        response = await client.post(PATHS["heartbeat"], data=json.dumps(HEARTBEAT), headers=hdrs)
        assert response.status == 202, await response.text()
    await service.stop()


# -- 13. labels -------------------------------------------------------------------------------


def test_one_agent_cannot_use_up_the_violation_type_labels_of_others() -> None:
    from promethios.ingest.aggregator import Aggregator
    from promethios.ingest.metrics import IngestMetrics

    metrics = IngestMetrics(Aggregator(), Clock(), max_types_per_agent=10)
    for i in range(60):  # a hostile agent invents a new type for every violation
        metrics.count_violation("team-a", "hostile", "low", f"made-up-{i}")
    metrics.count_violation("team-b", "honest", "high", "pii.email")
    text = metrics.render().decode()
    assert 'name="honest",namespace="team-b",severity="high",type="pii.email"' in text
    hostile_types = {
        line.split('type="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("promethios_violations_total{") and 'name="hostile"' in line
    }
    assert len(hostile_types) == 11 and "other" in hostile_types  # its own 10, then "other"


# -- 7. losses the sidecar reports are not ignored --------------------------------------------


async def test_violations_the_sidecar_dropped_show_in_status_metrics_and_events() -> None:
    from ingest_fakes import MemoryEvents

    service, sink = service_and_sink()
    events = service._event_sink
    assert isinstance(events, MemoryEvents)
    dropped = {"low": 3, "high": 1}
    report = with_value(METRICS, ("metrics", "droppedViolations"), 4)
    report = with_value(report, ("metrics", "droppedViolationsBySeverity"), dropped)
    async with TestClient(TestServer(build_app(service))) as client:
        code, answer = await send(client, PATHS["metrics"], json.dumps(report))
        assert code in (200, 202), answer
        # the same losses reported again under the same key count once
        again = {**report, "idempotencyKey": "m-1"}
        await send(client, PATHS["metrics"], json.dumps(again))
        await send(client, PATHS["metrics"], json.dumps(again))
        await service.idle()
        metrics = service.metrics.render().decode()
    lost = sink.last[AGENT]["governance"]["lostViolations"]
    assert lost == {"low": 6, "medium": 0, "high": 2, "critical": 0, "total": 8}
    assert 'promethios_violations_lost_total{name="support-bot",namespace="team-a",' in metrics
    reasons = [event["reason"] for event in events.created]
    assert "ViolationsLost" in reasons
    await service.stop()
