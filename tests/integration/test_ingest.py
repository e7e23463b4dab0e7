"""The ingest API against a real API server: status write-back, dedupe, stale, alerts.

The operator is not involved: each test creates the GovernedAgent and its api-key
Secret (as :mod:`promethios.ingest.keystore` specifies) directly, starts the real ingest
app in-process on a free port and talks to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_network
from typing import Any

import aiohttp
import kubernetes
import pytest
from aiohttp import web
from kube_helpers import api_key_secret, b64, start_ingest_ready

from promethios.ingest.alertformat import verify_signature
from promethios.ingest.main import IngestRunner, start_ingest
from promethios.ingest.settings import IngestSettings

GROUP, VERSION = "governance.promethios.ai", "v1alpha1"
NAME, IDENTITY, KEY = "bot", "gid-integration-1", "test-key-0123456789abcdef"
SIGNING = b"hook-signing-secret"

pytestmark = pytest.mark.usefixtures("crds_installed")


def create_objects(api: Any, namespace: str, hook_url: str) -> None:
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    agent = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "governedagents",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GovernedAgent",
            "metadata": {"name": NAME},
            "spec": {
                "image": "example.com/agent:1",
                "modelProvider": {"type": "openai"},
                "governance": {
                    "policyRef": {"name": "default"},
                    "heartbeatIntervalSeconds": 1,
                    "missedHeartbeatsBeforeStale": 2,
                },
                "alertSinks": [{"name": "hook"}],
            },
        },
    )
    uid = agent["metadata"]["uid"]
    core.create_namespaced_secret(namespace, api_key_secret(NAME, IDENTITY, KEY, uid))
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hook-signing"}, "data": {"key": b64(SIGNING)}}
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "alertsinks",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AlertSink",
            "metadata": {"name": "hook"},
            "spec": {
                "type": "webhook",
                "url": hook_url,
                "minSeverity": "high",
                "maxRetries": 1,
                "signingSecretRef": {"name": "hook-signing", "key": "key"},
            },
        },
    )


def get_status(api: Any, namespace: str) -> dict[str, Any]:
    obj = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "governedagents", NAME
    )
    return obj.get("status") or {}


async def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


class Hook:
    """A local webhook receiver."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            (await request.read(), request.headers.get("X-Promethios-Signature", ""))
        )
        return web.Response(status=204)


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield receiver, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
async def ingest(
    api_client: Any, namespace: str, hook: tuple[Hook, str]
) -> AsyncIterator[IngestRunner]:
    await asyncio.to_thread(create_objects, api_client, namespace, hook[1])
    runner = await start_ingest_ready(
        api_client,
        namespace,
        alert_backoff_seconds=0.1,
        alert_sink_allowed_cidrs=(ip_network("127.0.0.1/32"),),  # the local receiver, over http
    )
    yield runner
    await runner.stop()


def agent_headers(namespace: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {KEY}",
        "X-Agent-ID": f"{namespace}/{NAME}",
        "X-Governance-ID": IDENTITY,
        "Content-Type": "application/json",
    }


async def test_ingest_end_to_end(
    ingest: IngestRunner, api_client: Any, namespace: str, hook: tuple[Hook, str]
) -> None:
    base = f"http://127.0.0.1:{ingest.port}"
    agent_id = f"{namespace}/{NAME}"
    headers = agent_headers(namespace)
    heartbeat = {
        "agentId": agent_id,
        "status": "active",
        "uptime": 1,
        "lastActivity": "2024-05-01T10:00:00Z",
    }
    metrics = {
        "agentId": agent_id,
        "governanceIdentity": IDENTITY,
        "metrics": {"trustScore": 0.9, "violations": [], "interactions": 3, "responseTime": 80},
        "timestamp": "2024-05-01T10:00:00Z",
    }
    violation = {
        "agentId": agent_id,
        "violation": {
            "type": "pii",
            "severity": "high",
            "description": "email address",
            "context": {"x": "secret"},
        },
    }
    async with aiohttp.ClientSession(base) as http:

        async def post(path: str, body: dict[str, Any], **extra: str) -> tuple[int, dict[str, Any]]:
            async with http.post(
                path, data=json.dumps(body), headers={**headers, **extra}
            ) as response:
                return response.status, await response.json()

        # the seed's exact payloads
        assert (await post("/api/v1/agents/heartbeat", heartbeat))[0] == 202
        assert (await post("/api/v1/governance/metrics", metrics))[0] == 202
        status: dict[str, Any] = {}

        def heartbeat_written() -> bool:
            status.update(get_status(api_client, namespace))
            return (status.get("heartbeat") or {}).get("state") == "active"

        await eventually(heartbeat_written)
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["HeartbeatFresh"]["status"] == "True"

        # many heartbeats, few writes (flush interval 30 s, nothing significant changes)
        await ingest.service.idle()
        writes_before = ingest.service.metrics.status_write_count()
        for _ in range(20):
            assert (await post("/api/v1/agents/heartbeat", heartbeat))[0] == 202
        await ingest.service.idle()
        assert ingest.service.metrics.status_write_count() - writes_before <= 1

        # a violation is acknowledged only once the API server has it; a repeat counts once
        code, body = await post(
            "/api/v1/governance/violations", violation, **{"Idempotency-Key": "v-1"}
        )
        assert (code, body["accepted"]) == (200, 1)
        governance = get_status(api_client, namespace)["governance"]
        assert governance["violations"]["high"] == 1
        assert governance["recentViolations"][0]["id"] == "v-1"
        assert "secret" not in json.dumps(governance)
        code, body = await post(
            "/api/v1/governance/violations", violation, **{"Idempotency-Key": "v-1"}
        )
        assert (code, body["duplicates"]) == (200, 1)
        assert get_status(api_client, namespace)["governance"]["violations"]["total"] == 1

    # the webhook alert arrives signed
    receiver = hook[0]
    await eventually(lambda: bool(receiver.received))
    raw, signature = receiver.received[0]
    assert verify_signature(raw, SIGNING, signature, time.time())
    assert json.loads(raw)["violation"]["type"] == "pii"

    # a Warning Event regarding the agent
    events = kubernetes.client.CoreV1Api(api_client).list_namespaced_event(namespace)
    reasons = {(e.reason, e.type, e.involved_object.name) for e in events.items}
    assert ("PolicyViolation", "Warning", NAME) in reasons

    # no more heartbeats: stale after 2 x 1 s
    def stale() -> bool:
        conds = {c["type"]: c for c in get_status(api_client, namespace).get("conditions", [])}
        fresh = conds.get("HeartbeatFresh", {})
        return fresh.get("status") == "False" and fresh.get("reason") == "HeartbeatStale"

    await eventually(stale, 15)


async def test_restart_keeps_counters(
    api_client: Any, namespace: str, ingest: IngestRunner
) -> None:
    agent_id = f"{namespace}/{NAME}"
    violation = {
        "agentId": agent_id,
        "violations": [
            {"type": "pii", "severity": "medium", "description": "d", "idempotencyKey": "a"},
            {"type": "pii", "severity": "low", "description": "d", "idempotencyKey": "b"},
        ],
    }
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{ingest.port}") as http,
        http.post(
            "/api/v1/governance/violations",
            data=json.dumps(violation),
            headers=agent_headers(namespace),
        ) as response,
    ):
        assert response.status == 200
    await ingest.stop()
    settings = IngestSettings(host="127.0.0.1", port=0, metrics_port=0, namespaces=(namespace,))
    again = await start_ingest(settings, api_client=api_client)
    try:
        await asyncio.wait_for(again.service.ready.wait(), 20)
        state = again.service.agent(agent_id)
        assert state is not None and state.counts["medium"] == 1 and state.counts["low"] == 1
        async with (
            aiohttp.ClientSession(f"http://127.0.0.1:{again.port}") as http,
            http.post(
                "/api/v1/governance/violations",
                data=json.dumps(violation),
                headers=agent_headers(namespace),
            ) as response,
        ):
            assert (await response.json())["duplicates"] == 2
    finally:
        await again.stop()


async def test_a_sink_aimed_inside_the_cluster_is_refused_naming_the_field_not_the_url(
    api_client: Any, namespace: str, ingest: IngestRunner, hook: tuple[Hook, str]
) -> None:
    """The AlertSink's URL comes from a Secret and points at a private address over plain
    http: the Event names the field and the rule, never the URL (nor its token)."""
    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    leaky_url = b"http://10.1.2.3:8080/token-abc123"
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "leaky-url"}, "data": {"url": b64(leaky_url)}}
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "alertsinks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AlertSink", "metadata": {"name": "leaky"},
        "spec": {"type": "webhook", "urlSecretRef": {"name": "leaky-url", "key": "url"}},
    })  # fmt: skip
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "governedagents", NAME, {
        "spec": {"alertSinks": [{"name": "hook"}, {"name": "leaky"}]},
    })  # fmt: skip
    agent_id = f"{namespace}/{NAME}"

    def both_sinks_known() -> bool:
        state = ingest.service.agent(agent_id)
        return state is not None and "leaky" in state.config.alert_sinks

    await eventually(both_sinks_known)
    violation = {"agentId": agent_id, "violation": {"type": "secrets", "severity": "critical"}}
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{ingest.port}") as http,
        http.post(
            "/api/v1/governance/violations",
            data=json.dumps(violation),
            headers=agent_headers(namespace),
        ) as response,
    ):
        assert response.status == 200

    def failure_events() -> list[str]:
        events = core.list_namespaced_event(namespace).items
        return [e.message for e in events if e.reason == "AlertDeliveryFailed"]

    await eventually(lambda: bool(failure_events()))
    assert failure_events() == [
        "alert to webhook sink leaky refused by destination policy: spec.urlSecretRef must use "
        "https: plain http is allowed only to addresses in the operator's allowlist; "
        "nothing was sent"
    ]
    await eventually(lambda: bool(hook[0].received))  # the allowlisted receiver still gets it
    assert json.loads(hook[0].received[-1][0])["violation"]["type"] == "secrets"
