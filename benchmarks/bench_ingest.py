"""Ingest API benchmark (a script, not a test): throughput, latency, auth cost, writes.

Run: ``.venv/bin/python benchmarks/bench_ingest.py [--seconds 5] [--concurrency 64]``

Measured in one run:
1. Heartbeat throughput of the real ingest app (in-memory key store, counting status
   sink, 1,000 agents) against the *floor*: a minimal aiohttp handler that parses the
   same ~300-byte JSON and answers 204. Each server runs alone in a child process; the
   load generator (aiohttp client, keep-alive connection pool) runs in this process.
2. p50/p99 latency of the ingest app at a fixed 2,000 requests/s (open loop).
3. Authentication cost per request (SHA-256 + dict lookup), in µs.
4. Status writes per heartbeat at steady state, 1,000 simulated agents on a simulated
   clock (heartbeat every 30 s and every 5 s; flush interval 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from promethios.api.wire import HeartbeatReport
from promethios.ingest.aggregate import AgentConfig
from promethios.ingest.keystore import KeyStore
from promethios.ingest.main import start_ingest
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings

AGENTS = 1000


def key_of(i: int) -> str:
    return f"bench-key-{i:06d}-0123456789abcdef0123456789"


def payload(i: int) -> bytes:
    body = {
        "agentId": f"bench/agent-{i}",
        "status": "active",
        "uptime": 123456.789,
        "lastActivity": "2024-05-01T10:00:00.123456Z",
        "idempotencyKey": f"hb-{i}-0000000000",
        "padding": "x" * 120,  # ~300 bytes like a real sidecar heartbeat with extras
    }
    return json.dumps(body).encode()


def headers(i: int) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key_of(i)}",
        "X-Agent-ID": f"bench/agent-{i}",
        "X-Governance-ID": f"gid-{i}",
        "Content-Type": "application/json",
    }


class CountingSink:
    """In-memory status sink that counts writes."""

    def __init__(self) -> None:
        self.writes = 0

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        self.writes += 1
        return 200


def fill(service: IngestService) -> None:
    for i in range(AGENTS):
        service.keystore.add_key(key_of(i), f"bench/agent-{i}", f"gid-{i}")
        service.upsert_agent(AgentConfig("bench", f"agent-{i}", f"gid-{i}"))


# -- servers (child processes) --------------------------------------------------------------


async def _serve_ingest(port_queue: Any) -> None:
    settings = IngestSettings(host="127.0.0.1", port=0, rate_per_second=1e9, rate_burst=10**9)
    runner = await start_ingest(settings, status_sink=CountingSink(), keystore=KeyStore())
    fill(runner.service)
    port_queue.put(runner.port)
    await asyncio.Event().wait()


async def _serve_floor(port_queue: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v1/agents/heartbeat", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port_queue.put(runner.addresses[0][1])
    await asyncio.Event().wait()


def _child(kind: str, port_queue: Any) -> None:
    asyncio.run(_serve_ingest(port_queue) if kind == "ingest" else _serve_floor(port_queue))


def start_server(kind: str) -> tuple[multiprocessing.Process, int]:
    queue: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_child, args=(kind, queue), daemon=True)
    process.start()
    return process, int(queue.get(timeout=30))


# -- load -----------------------------------------------------------------------------------


async def closed_loop(port: int, seconds: float, concurrency: int) -> float:
    """Requests/s with ``concurrency`` workers on a keep-alive pool."""
    url = f"http://127.0.0.1:{port}/api/v1/agents/heartbeat"
    bodies = [payload(i) for i in range(AGENTS)]
    hdrs = [headers(i) for i in range(AGENTS)]
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            async with session.post(url, data=bodies[i % AGENTS], headers=hdrs[i % AGENTS]) as r:
                await r.read()
                assert r.status < 300, r.status
            done += 1
            i += concurrency

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm up connections
        await asyncio.gather(
            *[session.post(url, data=bodies[0], headers=hdrs[0]) for _ in range(4)]
        )
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*[worker(session, k) for k in range(concurrency)])
        return done / (time.perf_counter() - started)


async def open_loop(port: int, rate: float, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 latency (ms) at a fixed request rate; and errors."""
    url = f"http://127.0.0.1:{port}/api/v1/agents/heartbeat"
    latencies: list[float] = []
    errors = 0

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        async with session.post(url, data=payload(i % AGENTS), headers=headers(i % AGENTS)) as r:
            await r.read()
            errors += r.status >= 300
        latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            target = start + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i)))
        await asyncio.gather(*tasks)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return p50, p99, errors


# -- in-process measurements ----------------------------------------------------------------


def auth_microseconds() -> float:
    store = KeyStore()
    for i in range(AGENTS):
        store.add_key(key_of(i), f"bench/agent-{i}", f"gid-{i}")
    calls = 100_000
    started = time.perf_counter()
    for n in range(calls):
        i = n % AGENTS
        store.authenticate(f"Bearer {key_of(i)}", f"bench/agent-{i}", f"gid-{i}", 0.0)
    return (time.perf_counter() - started) / calls * 1e6


async def writes_per_heartbeat(interval: int, minutes: int = 10) -> float:
    """Simulated clock: every agent heartbeats every ``interval`` s; ticks every second."""
    clock = [1_700_000_000.0]
    sink = CountingSink()
    service = IngestService(IngestSettings(), sink, clock=lambda: clock[0])
    fill(service)
    report = HeartbeatReport.model_validate(
        {
            "agentId": "bench/agent-0",
            "status": "active",
            "uptime": 1,
            "lastActivity": "2024-01-01T00:00:00Z",
        }
    )
    states = [service.agent(f"bench/agent-{i}") for i in range(AGENTS)]
    heartbeats = writes_at_warm = beats_at_warm = 0
    for second in range(minutes * 60):
        clock[0] += 1
        for i, state in enumerate(states):
            if (second + i) % interval == 0 and state is not None:
                service.heartbeat(state, report, None)
                heartbeats += 1
        service.writer.tick()
        await asyncio.sleep(0)
        if second == 120:  # steady state begins after two minutes
            writes_at_warm, beats_at_warm = sink.writes, heartbeats
    await asyncio.sleep(0.01)
    await service.stop()
    return (sink.writes - writes_at_warm) / max(1, heartbeats - beats_at_warm)


async def main_async(args: argparse.Namespace) -> None:
    print(f"auth: {auth_microseconds():.2f} µs/request ({AGENTS} keys)")
    for interval in (30, 5):
        ratio = await writes_per_heartbeat(interval)
        print(
            f"status writes per heartbeat, {AGENTS} agents, "
            f"heartbeat {interval}s, flush 30s/120s: {ratio:.3f}"
        )
    floor_proc, floor_port = start_server("floor")
    ingest_proc, ingest_port = start_server("ingest")
    try:
        floor = await closed_loop(floor_port, args.seconds, args.concurrency)
        floor_proc.terminate()
        ingest = await closed_loop(ingest_port, args.seconds, args.concurrency)
        print(f"floor  (parse JSON, 204): {floor:8.0f} req/s")
        print(f"ingest (heartbeat, 202):  {ingest:8.0f} req/s   ratio {ingest / floor:.2f}")
        p50, p99, errors = await open_loop(ingest_port, args.rate, args.seconds)
        print(
            f"ingest at {args.rate:.0f} req/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors {errors}"
        )
    finally:
        floor_proc.terminate()
        ingest_proc.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=2000.0)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
