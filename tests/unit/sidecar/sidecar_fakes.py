"""Test doubles for the sidecar HTTP tests: a fake model provider and an ingest recorder.

The fake provider is the only test double: a local aiohttp server speaking the
OpenAI and Anthropic wire shapes (it stands in for a SaaS). The ingest recorder
is a local server that records what the sidecar delivers and dedupes
violations by idempotency key, as the real ingest API does.

The fixtures (``upstream``, ``ingest``, ``make_sidecar``) live here too, so the
unit tests and the adversarial tests (``tests/adversarial``) share them: each
directory's ``conftest.py`` imports them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from promethios.sidecar.app import Sidecar


@dataclass
class Upstream:
    """The fake model provider."""

    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    stream_chunks: list[str] = field(default_factory=lambda: ["Hello ", "world"])
    gate: asyncio.Event | None = None  # when set, the stream waits for it after the first chunk
    reply: str = "a plain answer"
    usage: dict[str, int] | None = field(default_factory=lambda: {"total_tokens": 30})
    answer: dict[str, Any] | None = None  # when set: the whole non-streamed answer
    sse: list[bytes] | None = None  # when set: a streamed answer's raw bytes, piece by piece
    delay: float = 0.0  # seconds each call waits before the answer starts
    record_bodies: bool = True  # False: bodies are drained, not kept (memory measurements)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v1"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.body(request)
        self.requests.append((request.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {"x-request-id": "req-1", "x-leak": "Bearer whatever", "set-cookie": "s=1"}
        if request.path == "/v1/models":
            return web.json_response({"data": [{"id": "gpt-test"}]}, headers=headers)
        if body and body.get("stream"):
            return await self.stream(request, headers)
        if self.answer is not None:
            return web.json_response(self.answer, headers=headers)
        if request.path == "/v1/messages":
            answer: dict[str, Any] = {
                "type": "message",
                "content": [{"type": "text", "text": self.reply}],
            }
            if self.usage:
                answer["usage"] = {
                    "input_tokens": 10,
                    "output_tokens": self.usage["total_tokens"] - 10,
                }
        else:
            answer = {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}}],
            }
            if self.usage:
                answer["usage"] = self.usage
        return web.json_response(answer, headers=headers)

    async def body(self, request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        if self.record_bodies:
            return await request.json()
        streamed = False
        async for chunk in request.content.iter_chunked(65_536):
            streamed = streamed or b'"stream": true' in chunk
        return {"stream": True} if streamed else None

    async def stream(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.sse is not None:
            for piece in self.sse:
                await response.write(piece)
            await response.write_eof()
            return response
        for i, text in enumerate(self.stream_chunks):
            chunk = {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if i == 0 and self.gate is not None:
                await asyncio.wait_for(self.gate.wait(), 5)
        final = {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


@dataclass
class Ingest:
    """The ingest recorder."""

    expected_key: str = "key-1"
    status: int = 200  # what to answer when the key is right (e.g. 503 = outage)
    retry_after: str | None = None  # the Retry-After header sent with such an answer
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    violations: dict[str, dict[str, Any]] = field(default_factory=dict)
    received_at: dict[str, float] = field(default_factory=dict)  # violation key -> loop time
    duplicates: int = 0
    rate_per_second: float | None = None  # a per-agent token bucket, as the real ingest has
    burst: float = 5.0
    throttled: int = 0
    metrics_by_key: dict[str, dict[str, Any]] = field(default_factory=dict)  # deduped
    lose_answers: int = 0  # the next N reports are recorded, then answered 503 (a lost answer)
    server: TestServer | None = None
    _tokens: float = 0.0
    _refilled: float | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(""))

    def bodies(self, path: str) -> list[Any]:
        return [b for p, _, b in self.requests if p == path]

    def take_token(self) -> bool:
        """The per-agent rate limit (one agent here): True if this request may pass."""
        if self.rate_per_second is None:
            return True
        now = asyncio.get_running_loop().time()
        if self._refilled is None:
            self._tokens = self.burst
        else:
            refill = (now - self._refilled) * self.rate_per_second
            self._tokens = min(self.burst, self._tokens + refill)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {self.expected_key}":
            return web.json_response({"error": "unauthorized", "message": "bad key"}, status=401)
        if self.status >= 300:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            body = {"error": "down", "message": "down"}
            return web.json_response(body, status=self.status, headers=headers)
        if not self.take_token():
            self.throttled += 1
            body = {"error": "rate_limited", "message": "slow down"}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        if request.path.endswith("/violations"):
            items = [body["violation"]] if "violation" in body else body["violations"]
            for item in items:
                if item["idempotencyKey"] in self.violations:
                    self.duplicates += 1
                self.violations[item["idempotencyKey"]] = item
                self.received_at.setdefault(
                    item["idempotencyKey"], asyncio.get_running_loop().time()
                )
        if request.path.endswith("/metrics"):
            self.metrics_by_key.setdefault(request.headers.get("Idempotency-Key", ""), body)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return web.json_response({"error": "lost", "message": "lost"}, status=503)
        return web.json_response({"accepted": 1, "duplicates": 0}, status=202)


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl: SSLContext | None = None,
) -> TestServer:
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=ssl)
    return server


def write_config(tmp_path: Path, upstream_url: str, ingest_url: str, **overrides: Any) -> Path:
    (tmp_path / "api-key").write_text("key-1\n")
    (tmp_path / "provider").write_text("cred-secret-123")
    provider = {
        "type": "openai",
        "baseUrl": upstream_url,
        "credentialFile": str(tmp_path / "provider"),
        **overrides.pop("provider", {}),
    }
    config = {
        "agentId": "team-a/agent-1",
        "governanceIdentity": "gid-1",
        "policyName": "default",
        "provider": provider,
        "ingest": {
            "url": ingest_url,
            "apiKeyFile": str(tmp_path / "api-key"),
            "heartbeatIntervalSeconds": 1,
            "metricsIntervalSeconds": 1,
            **overrides.pop("ingest", {}),
        },
        "spoolDir": str(tmp_path / "spool"),
        **overrides,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


SidecarFactory = Callable[..., Awaitable[Sidecar]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream()
    fake.server = await serve(fake.handle)
    yield fake
    await fake.server.close()


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    recorder = Ingest()
    recorder.server = await serve(recorder.handle)
    yield recorder
    await recorder.server.close()


@pytest.fixture
async def make_sidecar(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> AsyncIterator[SidecarFactory]:
    started: list[Sidecar] = []

    async def factory(loops: bool = False, **overrides: Any) -> Sidecar:
        path = tmp_path / "config.json"
        if overrides or not path.exists():
            path = write_config(tmp_path, upstream.url, ingest.url, **overrides)
        sidecar = Sidecar(path, poll_seconds=0.05, backoff_base=0.01, backoff_cap=0.05, loops=loops)
        await sidecar.start(agent_port=0, metrics_port=0)
        started.append(sidecar)
        return sidecar

    yield factory
    for sidecar in started:
        await sidecar.stop()
