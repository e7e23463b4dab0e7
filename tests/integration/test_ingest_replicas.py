"""Two ingest replicas on one real API server: every violation counted exactly once.

Both replicas run in-process (separate ports, separate state) against the same cluster,
as two pods behind one Service would: reports alternate between them, some concurrently,
and replays go to the replica that did not record them. The stored status is the source
of truth (resourceVersion-conditional writes, merge on 409), and the replay markers in
``status.governance.recentViolationKeys`` dedupe after a restart beyond the 20
``recentViolations``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kubernetes
import pytest
from kube_helpers import start_ingest_ready
from test_ingest import NAME, agent_headers, create_objects, get_status

from promethios.api.common import GROUP, VERSION
from promethios.ingest.aggregator import violation_key
from promethios.ingest.main import IngestRunner
from promethios.ingest.merge import newer

pytestmark = pytest.mark.usefixtures("crds_installed")
SEVERITIES = ("low", "medium", "high", "critical")
N = 40


async def start(api_client: Any, namespace: str) -> IngestRunner:
    return await start_ingest_ready(api_client, namespace, rate_burst=1000, rate_per_second=1000.0)


@pytest.fixture
async def replicas(api_client: Any, namespace: str) -> AsyncIterator[list[IngestRunner]]:
    # the alert sink points nowhere: alerts are not what this test is about
    await asyncio.to_thread(create_objects, api_client, namespace, "http://127.0.0.1:9/hook")
    runners = [await start(api_client, namespace), await start(api_client, namespace)]
    yield runners
    for runner in runners:
        await runner.stop()


def report(namespace: str, i: int) -> dict[str, Any]:
    return {
        "agentId": f"{namespace}/{NAME}",
        "violation": {
            "type": f"type-{i % 3}",
            "severity": SEVERITIES[i % 4],
            "description": f"violation {i}",
        },
    }


async def post(
    runner: IngestRunner, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{runner.port}") as http,
        http.post(path, data=json.dumps(body), headers=headers) as response,
    ):
        return response.status, await response.json()


async def violate(runner: IngestRunner, namespace: str, i: int) -> dict[str, Any]:
    headers = {**agent_headers(namespace), "Idempotency-Key": f"viol-{i}"}
    code, body = await post(runner, "/api/v1/governance/violations", report(namespace, i), headers)
    assert code == 200, body
    return body


async def caught_up(replicas: list[IngestRunner], api_client: Any, namespace: str) -> None:
    """Wait until every replica's view is the stored object (its watch delivered it)."""
    stored = await asyncio.to_thread(
        lambda: kubernetes.client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "governedagents", NAME
        )
    )
    version = stored["metadata"]["resourceVersion"]
    deadline = asyncio.get_running_loop().time() + 20
    for runner in replicas:
        while True:
            state = runner.service.agent(f"{namespace}/{NAME}")
            seen = state.stored.resource_version if state and state.stored else ""
            if seen and not newer(version, seen):
                break
            assert asyncio.get_running_loop().time() < deadline, "a replica's watch lags"
            await asyncio.sleep(0.05)


async def test_two_replicas_count_each_violation_once(
    replicas: list[IngestRunner], api_client: Any, namespace: str
) -> None:
    a, b = replicas
    headers = agent_headers(namespace)
    beat = {
        "agentId": f"{namespace}/{NAME}",
        "status": "active",
        "uptime": 5,
        "lastActivity": "2024-05-01T10:00:00Z",
    }
    for runner in replicas:
        assert (await post(runner, "/api/v1/agents/heartbeat", beat, headers))[0] == 202

    # alternating, first one by one, then in concurrent waves on both replicas
    for i in range(10):
        await violate(replicas[i % 2], namespace, i)
    for start_at in range(10, N, 10):
        await asyncio.gather(
            *(violate(replicas[i % 2], namespace, i) for i in range(start_at, start_at + 10))
        )
    for runner in replicas:
        assert (await post(runner, "/api/v1/agents/heartbeat", beat, headers))[0] == 202

    def check(status: dict[str, Any]) -> None:
        governance = status["governance"]
        expected = {s: sum(1 for i in range(N) if SEVERITIES[i % 4] == s) for s in SEVERITIES}
        assert governance["violations"] == {**expected, "total": N}
        ids = [item["id"] for item in governance["recentViolations"]]
        assert len(ids) == len(set(ids)) == 20
        keys = governance["recentViolationKeys"]
        assert len(keys) == len(set(keys)) == N
        assert set(keys) == {violation_key(f"viol-{i}") for i in range(N)}

    status = await asyncio.to_thread(get_status, api_client, namespace)
    check(status)
    assert status["heartbeat"]["state"] == "active"
    conflicts = sum(r.service.writer.conflicts for r in replicas)

    # every key replayed to the replica that did not record it: still N, and answered as
    # duplicates once each replica's watch has shown it the other's writes
    await caught_up(replicas, api_client, namespace)
    outcomes = await asyncio.gather(
        *(violate(replicas[(i + 1) % 2], namespace, i) for i in range(N))
    )
    assert sum(o["accepted"] for o in outcomes) == 0
    check(await asyncio.to_thread(get_status, api_client, namespace))

    # a restarted replica knows more than the 20 recentViolations: 30 replays, none counted
    await b.stop()
    replicas[1] = b = await start(api_client, namespace)
    outcomes = await asyncio.gather(*(violate(b, namespace, i) for i in range(N - 30, N)))
    assert sum(o["duplicates"] for o in outcomes) == 30
    outcomes = await asyncio.gather(*(violate(b, namespace, i) for i in range(N - 30)))
    assert sum(o["duplicates"] for o in outcomes) == N - 30
    check(await asyncio.to_thread(get_status, api_client, namespace))

    # a new violation on the restarted replica is counted once more, on top of the rest
    await violate(b, namespace, N)
    await violate(a, namespace, N)
    final = (await asyncio.to_thread(get_status, api_client, namespace))["governance"]
    assert final["violations"]["total"] == N + 1
    print(f"409 conflicts while racing: {conflicts}")
