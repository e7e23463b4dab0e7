"""The sidecar over HTTP: proxy, policy per mode, streaming, reporting, delivery."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sidecar_fakes import Ingest, SidecarFactory, Upstream

from promethios.api.wire import (
    PATH_HEARTBEAT,
    PATH_METRICS,
    PATH_VIOLATIONS,
    HeartbeatReport,
    MetricsReport,
    ViolationReport,
)
from promethios.sidecar.app import Sidecar

CRED = "cred-secret-123"


def chat(content: str, model: str = "gpt-test", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def post(
    sidecar: Sidecar, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{sidecar.agent_port}{path}", json=body, headers=headers
        ) as response,
    ):
        raw = await response.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return response.status, {k.lower(): v for k, v in response.headers.items()}, parsed


async def drain(sidecar: Sidecar) -> None:
    assert sidecar.delivery is not None
    for _ in range(20):
        outcome, _ = await sidecar.delivery.deliver_once()
        if outcome == "idle":
            return
    raise AssertionError("spool did not drain")


def spooled(sidecar: Sidecar) -> list[dict[str, Any]]:
    return [body for _, body in sidecar.state.spool.pending(1000)]


def policy(**spec: Any) -> dict[str, Any]:
    return {"policy": spec}


BLOCK_SECRET = {"blockedPatterns": [{"name": "project-x", "pattern": "project x"}]}


# -- credentials ---------------------------------------------------------------------


async def test_openai_credential_added_and_agent_credential_replaced(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar()
    status, headers, body = await post(
        sidecar,
        "/v1/chat/completions",
        chat("hi"),
        headers={"Authorization": "Bearer agent-own-key", "x-api-key": "agent-x"},
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == "a plain answer"
    path, up_headers, _ = upstream.requests[-1]
    assert path == "/v1/chat/completions"
    assert up_headers["Authorization"] == f"Bearer {CRED}"
    assert "x-api-key" not in {k.lower() for k in up_headers}
    assert headers.get("x-request-id") == "req-1"
    assert "x-leak" not in headers and "set-cookie" not in headers
    assert CRED not in json.dumps(headers) + json.dumps(body)


async def test_anthropic_uses_x_api_key_and_version(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(provider={"type": "anthropic"})
    status, _, body = await post(
        sidecar,
        "/v1/messages",
        chat("hi", model="claude-test", max_tokens=5),
        headers={"Authorization": "Bearer agent-own-key", "anthropic-version": "2024-01-01"},
    )
    assert status == 200 and body["content"][0]["text"] == "a plain answer"
    _, up_headers, _ = upstream.requests[-1]
    assert up_headers["x-api-key"] == CRED
    assert up_headers["anthropic-version"] == "2024-01-01"
    assert "Authorization" not in up_headers


async def test_models_listing_forwarded(make_sidecar: SidecarFactory, upstream: Upstream) -> None:
    sidecar = await make_sidecar()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{sidecar.agent_port}/v1/models") as response,
    ):
        assert response.status == 200
        assert (await response.json())["data"][0]["id"] == "gpt-test"
    assert upstream.requests[-1][1]["Authorization"] == f"Bearer {CRED}"


async def test_invalid_json_is_400(make_sidecar: SidecarFactory) -> None:
    sidecar = await make_sidecar()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions", data=b"{nope"
        ) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_json"


async def test_upstream_down_is_502(make_sidecar: SidecarFactory) -> None:
    sidecar = await make_sidecar(provider={"baseUrl": "http://127.0.0.1:9/v1"})
    status, _, body = await post(sidecar, "/v1/chat/completions", chat("hi"))
    assert status == 502 and body["error"]["code"] == "upstream_unreachable"


# -- enforce vs audit, per rule ------------------------------------------------------


async def test_blocked_pattern_enforce_refuses_and_spools_before_answering(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(**policy(**BLOCK_SECRET))
    status, _, body = await post(sidecar, "/v1/chat/completions", chat("Tell me about Project X"))
    assert status == 403
    assert body["error"] == {
        "type": "policy_violation",
        "code": "blocked_pattern.project-x",
        "message": body["error"]["message"],
        "rule": "blockedPatterns.project-x",
    }
    assert "blockedPatterns.project-x" in body["error"]["message"]
    assert upstream.requests == []
    [violation] = spooled(sidecar)  # on disk by the time the agent got its answer
    assert violation["type"] == "blocked_pattern.project-x" and violation["severity"] == "high"
    assert "project x" not in json.dumps(violation).lower()


async def test_blocked_pattern_audit_forwards_and_reports(
    make_sidecar: SidecarFactory, upstream: Upstream, ingest: Ingest
) -> None:
    sidecar = await make_sidecar(mode="audit", **policy(**BLOCK_SECRET))
    status, _, _ = await post(sidecar, "/v1/chat/completions", chat("Tell me about Project X"))
    assert status == 200
    assert upstream.requests[-1][2]["messages"][0]["content"] == "Tell me about Project X"
    await drain(sidecar)
    [violation] = ingest.violations.values()
    assert violation["type"] == "blocked_pattern.project-x"
    assert violation["context"]["action"] == "report"
    assert spooled(sidecar) == []


async def test_pii_redacted_before_upstream_in_enforce(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar()
    status, _, _ = await post(sidecar, "/v1/chat/completions", chat("mail jane@example.com"))
    assert status == 200
    assert upstream.requests[-1][2]["messages"][0]["content"] == "mail [REDACTED:email]"
    [violation] = spooled(sidecar)
    assert violation["type"] == "pii.email" and "jane" not in json.dumps(violation)


async def test_pii_audit_forwards_unredacted(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(mode="audit")
    await post(sidecar, "/v1/chat/completions", chat("mail jane@example.com"))
    assert upstream.requests[-1][2]["messages"][0]["content"] == "mail jane@example.com"
    assert [v["type"] for v in spooled(sidecar)] == ["pii.email"]


async def test_pii_block_action(make_sidecar: SidecarFactory, upstream: Upstream) -> None:
    sidecar = await make_sidecar(**policy(piiDetection={"action": "block"}))
    status, _, body = await post(sidecar, "/v1/chat/completions", chat("ssn 123-45-6789"))
    assert status == 403 and body["error"]["code"] == "pii.ssn"
    assert upstream.requests == []


async def test_response_redacted_and_response_block(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(
        **policy(
            blockedPatterns=[{"name": "leak", "pattern": "internal only", "appliesTo": "response"}]
        )
    )
    upstream.reply = "reach me at bob@example.com"
    status, _, body = await post(sidecar, "/v1/chat/completions", chat("hi"))
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "reach me at [REDACTED:email]"
    upstream.reply = "this is INTERNAL ONLY material"
    status, _, body = await post(sidecar, "/v1/chat/completions", chat("hi"))
    assert status == 403 and body["error"]["code"] == "blocked_pattern.leak"
    assert "material" not in json.dumps(body)


@pytest.mark.parametrize(("mode", "status"), [("enforce", 403), ("audit", 200)])
async def test_model_not_allowed(make_sidecar: SidecarFactory, mode: str, status: int) -> None:
    sidecar = await make_sidecar(
        mode=mode,
        provider={"allowedModels": ["gpt-test", "gpt-other"]},
        **policy(allowedModels=["gpt-other"]),
    )
    got, _, body = await post(sidecar, "/v1/chat/completions", chat("hi", model="gpt-test"))
    assert got == status
    if status == 403:
        assert (
            body["error"]["code"] == "model_not_allowed"
            and body["error"]["rule"] == "allowedModels"
        )
    assert [v["type"] for v in spooled(sidecar)] == ["model_not_allowed"]
    ok, _, _ = await post(sidecar, "/v1/chat/completions", chat("hi", model="gpt-other"))
    assert ok == 200


# -- limits --------------------------------------------------------------------------


async def test_requests_per_minute_429_with_retry_after(make_sidecar: SidecarFactory) -> None:
    sidecar = await make_sidecar(**policy(rateLimits={"requestsPerMinute": 2}))
    for _ in range(2):
        assert (await post(sidecar, "/v1/chat/completions", chat("hi")))[0] == 200
    statuses = []
    for _ in range(3):
        status, headers, body = await post(sidecar, "/v1/chat/completions", chat("hi"))
        statuses.append(status)
    assert statuses == [429, 429, 429]
    assert body["error"]["code"] == "rate_limit.requests"
    assert 1 <= int(headers["retry-after"]) <= 60
    # three refusals, reported once (cooldown) so a hot loop cannot flood the spool
    assert [v["type"] for v in spooled(sidecar)] == ["rate_limit.requests"]


async def test_budget_exhaustion_429(make_sidecar: SidecarFactory, upstream: Upstream) -> None:
    sidecar = await make_sidecar(**policy(budget={"tokens": 50, "windowSeconds": 3600}))
    upstream.usage = {"total_tokens": 30}
    assert (await post(sidecar, "/v1/chat/completions", chat("hi")))[0] == 200
    assert (await post(sidecar, "/v1/chat/completions", chat("hi")))[0] == 200
    status, headers, body = await post(sidecar, "/v1/chat/completions", chat("hi"))
    assert status == 429 and body["error"]["code"] == "budget.exhausted"
    assert int(headers["retry-after"]) > 3000
    assert len(upstream.requests) == 2


async def test_tokens_estimated_without_usage(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(**policy(rateLimits={"tokensPerMinute": 10}))
    upstream.usage = None
    upstream.reply = "x" * 40  # ~10 tokens estimated
    assert (await post(sidecar, "/v1/chat/completions", chat("hi")))[0] == 200
    status, _, body = await post(sidecar, "/v1/chat/completions", chat("hi"))
    assert status == 429 and body["error"]["code"] == "rate_limit.tokens"


async def test_rate_limit_audit_forwards(make_sidecar: SidecarFactory, upstream: Upstream) -> None:
    sidecar = await make_sidecar(mode="audit", **policy(rateLimits={"requestsPerMinute": 1}))
    for _ in range(3):
        assert (await post(sidecar, "/v1/chat/completions", chat("hi")))[0] == 200
    assert len(upstream.requests) == 3
    assert [v["type"] for v in spooled(sidecar)] == ["rate_limit.requests"]


# -- streaming -----------------------------------------------------------------------


@pytest.mark.parametrize("inspect", [False, True])
async def test_stream_arrives_incrementally(
    make_sidecar: SidecarFactory, upstream: Upstream, inspect: bool
) -> None:
    # Without response rules the stream is relayed raw; with them, text beyond the
    # held-back tail (64 characters) is still released as it arrives.
    sidecar = await make_sidecar(**policy(piiDetection={"enabled": inspect}))
    upstream.gate = asyncio.Event()
    upstream.stream_chunks = ["first chunk " + "." * 100, "second"]
    received = b""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions",
            json=chat("hi", stream=True),
        ) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        # The upstream holds the rest until we have seen the first chunk: buffering would hang.
        while b"first chunk" not in received:
            received += await asyncio.wait_for(response.content.readany(), 5)
        assert b"second" not in received
        upstream.gate.set()
        received += await response.read()
    assert b"second" in received and received.endswith(b"data: [DONE]\n\n")


async def test_stream_blocked_mid_stream(make_sidecar: SidecarFactory, upstream: Upstream) -> None:
    sidecar = await make_sidecar(**policy(**BLOCK_SECRET))
    upstream.stream_chunks = ["about proj", "ect x: details", " and more"]
    status, _, raw = await post(sidecar, "/v1/chat/completions", chat("hi", stream=True))
    assert status == 200
    text = raw.decode()
    assert "event: error" in text and "blocked_pattern.project-x" in text
    assert "details" not in text and "[DONE]" not in text
    assert [v["type"] for v in spooled(sidecar)] == ["blocked_pattern.project-x"]


async def test_stream_redacts_pii(make_sidecar: SidecarFactory, upstream: Upstream) -> None:
    sidecar = await make_sidecar()
    upstream.stream_chunks = ["write to bob@exa", "mple.com", " today"]
    _, _, raw = await post(sidecar, "/v1/chat/completions", chat("hi", stream=True))
    text = raw.decode()
    assert "bob@" not in text and "[REDACTED:email]" in text and "today" in text


# -- reporting endpoints and delivery --------------------------------------------------


async def test_agent_heartbeat_folded_into_the_sidecars_with_identity(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    sidecar = await make_sidecar()
    assert sidecar.delivery is not None
    beat = {
        "agentId": "someone-else/agent-9",
        "status": "inactive",
        "uptime": 5,
        "lastActivity": "2026-01-01T00:00:00Z",
    }
    status, _, body = await post(sidecar, PATH_HEARTBEAT, beat)
    assert status == 202 and body == {"accepted": 1, "duplicates": 0}
    assert ingest.requests == []  # answered by the sidecar, reported on its own clock
    assert (await sidecar.delivery.send_heartbeat()).ok
    path, headers, sent = ingest.requests[-1]
    assert path == PATH_HEARTBEAT and headers["Authorization"] == "Bearer key-1"
    assert headers["X-Agent-ID"] == "team-a/agent-1" and headers["X-Governance-ID"] == "gid-1"
    report = HeartbeatReport.model_validate(sent)
    assert report.status == "inactive" and report.agent_id == "team-a/agent-1"


async def test_agent_report_validated(make_sidecar: SidecarFactory, ingest: Ingest) -> None:
    sidecar = await make_sidecar()
    status, _, body = await post(sidecar, PATH_HEARTBEAT, {"status": "sleepy", "uptime": -1})
    assert status == 400 and body["error"] == "invalid_report" and body["fields"]
    assert ingest.requests == []


async def test_agent_violations_spooled_then_delivered(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    sidecar = await make_sidecar()
    report = {
        "agentId": "team-a/agent-1",
        "violation": {
            "type": "custom.thing",
            "severity": "low",
            "description": "d",
            "context": {"a": 1},
        },
    }
    status, _, body = await post(sidecar, PATH_VIOLATIONS, report)
    assert status == 202 and body["accepted"] == 1
    assert spooled(sidecar) == [] and len(sidecar.state.agent_spool) == 1  # the agent's spool
    await drain(sidecar)
    [delivered] = ingest.violations.values()
    assert delivered["type"] == "custom.thing" and delivered["idempotencyKey"].startswith("sc-")
    _, headers, sent = ingest.requests[-1]
    assert headers["Idempotency-Key"] == delivered["idempotencyKey"]
    ViolationReport.model_validate(sent)


async def test_heartbeat_and_metrics_reports(make_sidecar: SidecarFactory, ingest: Ingest) -> None:
    sidecar = await make_sidecar(spoolMaxEntries=10)
    assert sidecar.delivery is not None
    await post(sidecar, "/v1/chat/completions", chat("mail a@b.io"))
    sidecar.state.spool.dropped["low"] += 2  # as if the spool had overflowed
    assert (await sidecar.delivery.send_heartbeat()).ok
    assert (await sidecar.delivery.send_metrics()).ok
    beat = HeartbeatReport.model_validate(ingest.bodies(PATH_HEARTBEAT)[-1])
    assert beat.status == "active" and beat.uptime >= 0
    raw = ingest.bodies(PATH_METRICS)[-1]
    report = MetricsReport.model_validate(raw)
    assert report.metrics.interactions == 1 and report.metrics.violations == []
    assert report.metrics.response_time > 0
    assert report.metrics.trust_score == pytest.approx(95.0)  # one medium: -0.05
    assert raw["metrics"]["droppedViolations"] == 2
    assert raw["metrics"]["droppedViolationsBySeverity"] == {"low": 2}
    assert sidecar.state.spool.take_dropped() == {}


async def test_outage_and_restart_deliver_every_violation_exactly_once(
    make_sidecar: SidecarFactory, ingest: Ingest, tmp_path: Path
) -> None:
    ingest.status = 503
    first = await make_sidecar(loops=True)
    for i in range(7):
        await post(first, "/v1/chat/completions", chat(f"mail user{i}@example.com"))
    keys = {v["idempotencyKey"] for v in spooled(first)}
    assert len(keys) == 7
    await asyncio.sleep(0.2)  # the sender retries against the outage, with backoff
    assert ingest.violations == {} and len(ingest.bodies(PATH_VIOLATIONS)) >= 2
    await first.stop()
    ingest.status = 200
    second = await make_sidecar(loops=True)  # same spool directory
    for _ in range(100):
        if not spooled(second):
            break
        await asyncio.sleep(0.02)
    assert set(ingest.violations) == keys and ingest.duplicates == 0
    assert list((tmp_path / "spool").glob("*.json")) == []


async def test_permanent_rejection_moves_to_rejected(
    make_sidecar: SidecarFactory, ingest: Ingest, tmp_path: Path
) -> None:
    sidecar = await make_sidecar()
    await post(sidecar, "/v1/chat/completions", chat("mail a@b.io"))
    await post(sidecar, "/v1/chat/completions", chat("mail c@d.io"))
    ingest.status = 422
    await drain(sidecar)
    assert spooled(sidecar) == []
    assert len(list((tmp_path / "spool" / "rejected").iterdir())) == 2


async def test_key_rotation_picked_up_by_poll(
    make_sidecar: SidecarFactory, ingest: Ingest, tmp_path: Path
) -> None:
    sidecar = await make_sidecar()
    assert sidecar.delivery is not None
    key_file = tmp_path / "api-key"
    key_file.write_text("key-2")
    stat = key_file.stat()
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    ingest.expected_key = "key-2"
    for _ in range(50):  # the poll loop runs every 50 ms in tests
        if sidecar.store.current.api_key == "key-2":
            break
        await asyncio.sleep(0.02)
    assert (await sidecar.delivery.send_heartbeat()).ok
    assert [h["Authorization"] for _, h, _ in ingest.requests] == ["Bearer key-2"]


async def test_401_rereads_key_and_retries(
    make_sidecar: SidecarFactory, ingest: Ingest, tmp_path: Path
) -> None:
    sidecar = await make_sidecar()
    assert sidecar.delivery is not None
    sidecar.tasks[0].cancel()  # no polling: only the 401 can make it notice
    (tmp_path / "api-key").write_text("key-9")
    ingest.expected_key = "key-9"
    assert (await sidecar.delivery.send_heartbeat()).ok
    assert [h["Authorization"] for _, h, _ in ingest.requests] == ["Bearer key-1", "Bearer key-9"]


async def test_metrics_and_probes(make_sidecar: SidecarFactory) -> None:
    sidecar = await make_sidecar(spoolMaxEntries=10, mode="audit")
    for i in range(12):
        await post(sidecar, "/v1/chat/completions", chat(f"mail u{i}@b.io"))
    base = f"http://127.0.0.1:{sidecar.metrics_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
        async with session.get(f"{base}/readyz") as ready:
            assert ready.status == 200
        async with session.get(f"http://127.0.0.1:{sidecar.agent_port}/healthz") as health:
            assert health.status == 200
    assert 'promethios_sidecar_spool_dropped_total{severity="medium"} 2.0' in text
    assert 'promethios_sidecar_violations_total{kind="pii",severity="medium"} 12.0' in text
    assert "promethios_sidecar_spool_entries 10.0" in text
    assert (
        'promethios_sidecar_requests_total{endpoint="/v1/chat/completions",'
        'outcome="forwarded"} 12.0' in text
    )


async def test_policy_reload_without_restart(
    make_sidecar: SidecarFactory, upstream: Upstream, tmp_path: Path
) -> None:
    sidecar = await make_sidecar(**policy(**BLOCK_SECRET))
    assert (await post(sidecar, "/v1/chat/completions", chat("project x")))[0] == 403
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    config["mode"] = "audit"
    path.write_text(json.dumps(config))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    for _ in range(50):
        if sidecar.store.config.mode == "audit":
            break
        await asyncio.sleep(0.02)
    assert (await post(sidecar, "/v1/chat/completions", chat("project x")))[0] == 200
