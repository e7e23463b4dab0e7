"""Staleness across an ingest restart, against a real API server.

Two agents with a 10 s stale window (5 s x 2): one sends a heartbeat, the other never
does. The ingest stops before either window ends, so nothing marks them while it is down
(their stored status still says fresh / awaiting). Once both windows have passed, a new
ingest starts: it marks both stale at once (well within one window of its start), from
the stored heartbeat and from the agent's creation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import kubernetes
import pytest
from kube_helpers import api_key_secret, start_ingest_ready

from promethios.api.conditions import parse_time

GROUP, VERSION = "governance.promethios.ai", "v1alpha1"
IDENTITY, KEY = "gid-restart-1", "restart-key-0123456789abcdef"
INTERVAL, MISSED = 5, 2
WINDOW = INTERVAL * MISSED
#: How soon after its start the new ingest must have written "stale" (less than a window).
AT_ONCE = 5.0

pytestmark = pytest.mark.usefixtures("crds_installed")


def create_agent(api: Any, namespace: str, name: str) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GovernedAgent",
        "metadata": {"name": name},
        "spec": {
            "image": "example.com/agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {
                "policyRef": {"name": "default"},
                "heartbeatIntervalSeconds": INTERVAL,
                "missedHeartbeatsBeforeStale": MISSED,
            },
        },
    }
    custom = kubernetes.client.CustomObjectsApi(api)
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "governedagents", body
    )
    return created


def fresh_condition(api: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "governedagents", name
    )
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "HeartbeatFresh"), {})


def marked_stale(api: Any, namespace: str, name: str) -> Callable[[], bool]:
    return lambda: fresh_condition(api, namespace, name).get("reason") == "HeartbeatStale"


async def eventually(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not reached in {seconds:g} s: {what}"
        await asyncio.sleep(0.1)


async def test_a_restarted_ingest_marks_what_went_silent_at_once(
    api_client: Any, namespace: str
) -> None:
    beating = create_agent(api_client, namespace, "beating")
    silent = create_agent(api_client, namespace, "silent")
    core = kubernetes.client.CoreV1Api(api_client)
    secret = api_key_secret("beating", IDENTITY, KEY, beating["metadata"]["uid"])
    core.create_namespaced_secret(namespace, secret)

    first = await start_ingest_ready(api_client, namespace)
    try:
        headers = {
            "Authorization": f"Bearer {KEY}",
            "X-Agent-ID": f"{namespace}/beating",
            "X-Governance-ID": IDENTITY,
            "Content-Type": "application/json",
        }
        heartbeat = {
            "agentId": f"{namespace}/beating",
            "status": "active",
            "uptime": 1,
            "lastActivity": "2024-05-01T10:00:00Z",
        }
        async with (
            aiohttp.ClientSession(f"http://127.0.0.1:{first.port}") as http,
            http.post("/api/v1/agents/heartbeat", data=json.dumps(heartbeat), headers=headers)
            as response,
        ):  # fmt: skip
            assert response.status == 202
        sent = time.time()
        await eventually(
            lambda: fresh_condition(api_client, namespace, "beating").get("status") == "True",
            WINDOW / 2,
            "the heartbeat written",
        )
        await eventually(
            lambda: fresh_condition(api_client, namespace, "silent").get("status") == "Unknown",
            WINDOW / 2,
            "the silent agent awaiting its first heartbeat",
        )
    finally:
        await first.stop()
    stopped = time.time()
    assert stopped < sent + WINDOW, "the first ingest ran too long to leave anything to mark"

    # No ingest runs while both windows pass: nothing marks the agents meanwhile.
    created = parse_time(silent["metadata"]["creationTimestamp"])
    assert created is not None
    stale_at = max(sent, created.timestamp()) + WINDOW + 1
    await eventually(lambda: time.time() > stale_at, 3 * WINDOW, "both windows passed")
    assert fresh_condition(api_client, namespace, "beating").get("status") == "True"
    assert fresh_condition(api_client, namespace, "silent").get("status") == "Unknown"

    second = await start_ingest_ready(api_client, namespace)
    try:
        for name in ("beating", "silent"):
            await eventually(marked_stale(api_client, namespace, name), AT_ONCE, f"{name} stale")
    finally:
        await second.stop()
