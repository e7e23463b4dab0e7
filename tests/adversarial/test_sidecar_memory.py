"""Escape 5: a memory bomb resets the budget.

The sidecar runs under a small memory limit; an OOM kill restarts it with empty
rate windows and budget. So what it buffers and parses is bounded (bytes, JSON
depth, JSON nodes, bytes held across concurrent calls, the provider's answers),
and a refusal names the limit. Peak memory is measured with tracemalloc while the
running sidecar handles the worst bodies it still accepts.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from raw_http import json_body, raw_request
from sidecar_fakes import SidecarFactory, Upstream

from promethios.api.wire import PATH_HEARTBEAT
from promethios.sidecar.app import Sidecar

MiB = 1 << 20
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
#: The limits these tests set (each also a default: see the report's figures).
LIMITS = {
    "maxRequestBytes": 8 * MiB,
    "maxJsonNodes": 50_000,
    "maxJsonDepth": 64,
    "maxBufferedBytes": 24 * MiB,
    "maxResponseBytes": 16 * MiB,
    "maxReportBytes": 1 * MiB,
}


async def send(sidecar: Sidecar, body: bytes, path: str = "/v1/chat/completions") -> Any:
    url = f"http://127.0.0.1:{sidecar.agent_port}{path}"
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.read()


def message(raw: bytes) -> str:
    parsed = json.loads(raw)
    error = parsed.get("error")
    return str(error.get("message") if isinstance(error, dict) else parsed.get("message"))


@asynccontextmanager
async def peak_mib() -> AsyncIterator[Callable[[], float]]:
    """tracemalloc's peak (MiB above the start) over the block."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    peak: list[float] = [0.0]
    try:
        yield lambda: peak[0]
    finally:
        peak[0] = (tracemalloc.get_traced_memory()[1] - base) / MiB
        tracemalloc.stop()


async def test_node_bomb_is_refused_naming_the_limit(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar()  # default limits
    bomb = json.dumps({**CHAT, "x": [{}] * 1_000_000}).encode()  # 4 MB of {}
    async with peak_mib() as peak:
        status, raw = await send(sidecar, bomb)
    print(f"4 MB node bomb: status {status}, peak {peak():.1f} MiB")
    assert status == 413 and "maxJsonNodes" in message(raw)
    assert upstream.requests == []
    assert peak() < 24, f"peak {peak():.1f} MiB for a refused 4 MB body"


async def test_depth_bomb_is_refused_naming_the_limit(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar()
    bomb = b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, raw = await send(sidecar, bomb)
    assert status == 400 and "maxJsonDepth" in message(raw)
    assert upstream.requests == []


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_the_byte_limit_is_413_naming_it(
    make_sidecar: SidecarFactory, upstream: Upstream, chunked: bool
) -> None:
    sidecar = await make_sidecar(limits={"maxRequestBytes": 65_536})
    body = json.dumps({**CHAT, "pad": "x" * 100_000}).encode()
    if chunked:
        size = f"{len(body):x}".encode()
        framed = size + b"\r\n" + body + b"\r\n0\r\n\r\n"
        headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
        status, raw = await raw_request(
            sidecar.agent_port, "POST", "/v1/chat/completions", framed, headers, length=False
        )
    else:
        status, raw = await send(sidecar, body)
    assert status == 413 and "maxRequestBytes" in str(json_body(raw))
    assert upstream.requests == []


async def test_report_over_its_limit_is_413(make_sidecar: SidecarFactory) -> None:
    sidecar = await make_sidecar()
    beat = {"status": "active", "uptime": 1, "lastActivity": "2026-01-01T00:00:00Z"}
    body = json.dumps({**beat, "pad": "x" * (2 * MiB)}).encode()
    status, raw = await send(sidecar, body, PATH_HEARTBEAT)
    assert status == 413 and "maxReportBytes" in message(raw)


def worst_bodies() -> dict[str, bytes]:
    """The worst bodies still accepted under LIMITS, each near a limit."""
    room = LIMITS["maxRequestBytes"] - 1024
    astral = "\U0001f600" + "a" * (room - 64) + " jane.doe@example.com"  # 4 bytes a char
    nodes = [{"k": i} for i in range((LIMITS["maxJsonNodes"] - 16) // 3)]  # dict, key, value
    escaped = "\\u0041" * ((room - 64) // 7) + "jane\\u0040example.com"  # 7 bytes once dumped
    return {
        "one huge string, non-BMP, with PII": json.dumps({**CHAT, "x": astral}).encode(),
        "as many nodes as allowed": json.dumps({**CHAT, "x": nodes}).encode(),
        "one huge escaped string with PII": json.dumps({**CHAT, "x": escaped}).encode(),
    }


@pytest.mark.parametrize("name", list(worst_bodies()))
async def test_worst_accepted_body_peaks_within_bound(
    make_sidecar: SidecarFactory, upstream: Upstream, name: str
) -> None:
    sidecar = await make_sidecar(limits=LIMITS)
    upstream.record_bodies = False  # the fake provider's own copy is not the sidecar's
    body = worst_bodies()[name]
    assert len(body) <= LIMITS["maxRequestBytes"]
    async with peak_mib() as peak:
        status, _ = await send(sidecar, body)
    assert status == 200 and len(upstream.requests) == 1
    print(f"{name}: {len(body) / MiB:.1f} MiB body, peak {peak():.1f} MiB")
    assert peak() < 10 * LIMITS["maxRequestBytes"] / MiB


async def test_concurrent_bodies_share_one_budget(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    limits = {**LIMITS, "maxRequestBytes": 4 * MiB, "maxBufferedBytes": 8 * MiB}
    sidecar = await make_sidecar(limits=limits)
    body = json.dumps({**CHAT, "x": "y" * (4 * MiB - 200)}).encode()
    upstream.record_bodies = False
    upstream.delay = 0.2  # each call is held at the provider a while
    async with peak_mib() as peak:
        results = await asyncio.gather(*(send(sidecar, body) for _ in range(8)))
    assert [status for status, _ in results] == [200] * 8
    print(f"8 concurrent 4 MiB bodies: peak {peak():.1f} MiB")
    assert peak() < 48, f"peak {peak():.1f} MiB: bodies were not bounded together"


async def test_provider_answer_over_its_limit_is_refused(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(limits={"maxResponseBytes": 65_536})
    upstream.reply = "z" * 100_000
    status, raw = await send(sidecar, json.dumps(CHAT).encode())
    assert status == 502 and "maxResponseBytes" in message(raw)


async def test_streamed_event_over_the_limit_ends_the_stream(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(limits={"maxResponseBytes": 65_536})
    upstream.sse = [b"data: " + b"z" * 40_000, b"z" * 40_000, b"z" * 40_000 + b"\n\n"]
    status, raw = await send(sidecar, json.dumps({**CHAT, "stream": True}).encode())
    assert status == 200
    assert b"event: error" in raw and b"maxResponseBytes" in raw
    assert b"z" * 1000 not in raw
