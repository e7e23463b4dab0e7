"""Benchmark of the governance sidecar: proxy overhead, idle memory, policy cost.

Run: ``python benchmarks/bench_sidecar.py [--requests N] [--json]``

- A fake OpenAI-compatible upstream runs in its own process (this script with
  ``--serve-upstream``); a real ``promethios sidecar`` runs in another, with a
  policy of two blocked patterns and PII detection of every kind (redact).
- The same 1 KB non-streaming chat request is sent directly to the upstream and
  through the sidecar, in alternating rounds so both see the same machine load;
  p50/p99 of each, the added latency and the ratio are reported.
- Idle RSS of the sidecar process is measured after start-up, before any load, beside
  its floor: a process that imports the same three libraries (aiohttp, pydantic,
  prometheus_client), defines one pydantic model, registers one metric and serves
  two idle aiohttp listeners, as the sidecar does.
- The policy check is timed in-process: request + response inspection per call.

With ``--json`` the results are also written to ``benchmarks/results/sidecar.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "sidecar.json"
WORDS = [
    "governed",
    "agents",
    "report",
    "heartbeats",
    "metrics",
    "and",
    "violations",
    "to",
    "the",
    "ingest",
    "api",
]
PROMPT = " ".join(WORDS[i % len(WORDS)] for i in range(150))[:1024]
REQUEST = {"model": "gpt-bench", "messages": [{"role": "user", "content": PROMPT}]}
ANSWER = {
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": PROMPT}}],
    "usage": {"total_tokens": 300},
}
#: The memory floor: what any sidecar built on these three libraries costs at idle.
RSS_FLOOR = """
import asyncio, sys
import pydantic, prometheus_client
from aiohttp import web, ClientSession

class Report(pydantic.BaseModel):
    agentId: str
    status: str

prometheus_client.Counter("floor_requests", "requests")

async def main(port_a, port_b):
    async def ok(_):
        return web.json_response(Report(agentId="a/b", status="active").model_dump())
    for port in (port_a, port_b):
        app = web.Application()
        app.router.add_get("/healthz", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    async with ClientSession():
        await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""
#: Exactly what the ``promethios`` console script runs.
CLI = "import sys; from promethios.cli import main; sys.exit(main())"
POLICY = {
    "blockedPatterns": [
        {"name": "secret-project", "pattern": r"project\s+nightingale"},
        {"name": "exfil", "pattern": r"(?:dump|export)\s+all\s+customer\s+records"},
    ],
    "piiDetection": {"action": "redact"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_upstream(port: int) -> None:
    """The fake provider (and ingest sink): answers every POST with a 1 KB completion."""
    from aiohttp import web

    body = json.dumps(ANSWER).encode()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if request.path.startswith("/api/"):
            return web.json_response({"accepted": 1}, status=202)
        return web.Response(body=body, content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)  # the sidecar bounds bodies
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def write_config(directory: Path, upstream_port: int, proxy_port: int, metrics_port: int) -> Path:
    (directory / "api-key").write_text("bench-key")
    (directory / "provider").write_text("sk-bench-credential")
    config = {
        "agentId": "bench/agent",
        "governanceIdentity": "bench-gid",
        "policyName": "bench",
        "policy": POLICY,
        "provider": {
            "type": "openai",
            "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
            "credentialFile": str(directory / "provider"),
        },
        "ingest": {
            "url": f"http://127.0.0.1:{upstream_port}",
            "apiKeyFile": str(directory / "api-key"),
        },
        "proxyPort": proxy_port,
        "metricsPort": metrics_port,
        "spoolDir": str(directory / "spool"),
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


async def wait_ready(url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def measure(
    urls: dict[str, str], rounds: int, per_round: int
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of direct and proxied calls, alternating rounds."""
    direct_url = f"{urls['direct']}/v1/chat/completions"
    proxy_url = f"{urls['proxy']}/v1/chat/completions"
    direct: list[float] = []
    proxied: list[float] = []
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in (direct_url, proxy_url):  # warm-up: connections, caches
            for _ in range(50):
                await call(session, target)
        for _ in range(rounds):
            for target, sink in ((direct_url, direct), (proxy_url, proxied)):
                for _ in range(per_round):
                    sink.append(await call(session, target))
    return direct, proxied


async def call(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.post(url, json=REQUEST) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return (time.perf_counter() - started) * 1000.0


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def policy_cost_us(iterations: int = 2000) -> dict[str, float]:
    """Microseconds per request for request + response inspection (in-process)."""
    from promethios.api.policy import GovernancePolicySpec
    from promethios.sidecar.policy import PolicyEngine

    engine = PolicyEngine(GovernancePolicySpec.model_validate(POLICY), "enforce")
    started = time.perf_counter()
    for _ in range(iterations):
        engine.check_model("gpt-bench")
        engine.inspect_payload(REQUEST, "request")
        engine.inspect_payload(ANSWER, "response")
    per_call = (time.perf_counter() - started) / iterations * 1e6
    return {"policy_check_us_per_request": round(per_call, 1)}


def rss_mib(pid: int) -> float:
    return round(float(psutil.Process(pid).memory_info().rss) / 2**20, 1)


def start(config: Path, upstream_port: int) -> list[subprocess.Popen[bytes]]:
    """The fake upstream and a real ``promethios sidecar``, each in its own process."""
    upstream = [sys.executable, __file__, "--serve-upstream", str(upstream_port)]
    sidecar = [sys.executable, "-c", CLI, "sidecar", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return [
        subprocess.Popen(upstream),
        subprocess.Popen([*sidecar, "--log-level", "WARNING"], env=env),
    ]


async def measure_all(
    sidecar_pid: int, ports: tuple[int, int, int], requests: int
) -> dict[str, Any]:
    """Idle RSS, then the latency rounds, then RSS after load."""
    upstream_port, proxy_port, metrics_port = ports
    await wait_ready(f"http://127.0.0.1:{upstream_port}/v1/models")
    await wait_ready(f"http://127.0.0.1:{metrics_port}/healthz")
    await asyncio.sleep(1.0)
    idle = rss_mib(sidecar_pid)
    floor = await floor_rss_mib()
    urls = {
        "direct": f"http://127.0.0.1:{upstream_port}",
        "proxy": f"http://127.0.0.1:{proxy_port}",
    }
    rounds = 10
    direct, proxied = await measure(urls, rounds, max(1, requests // rounds))
    results = summarize(direct, proxied, idle, rss_mib(sidecar_pid))
    results["floor_idle_rss_mib"] = floor
    results["ratio_idle_rss"] = round(idle / floor, 2)
    return results


async def floor_rss_mib() -> float:
    """Idle RSS of the floor process (see ``RSS_FLOOR``)."""
    ports = (free_port(), free_port())
    floor = await asyncio.create_subprocess_exec(sys.executable, "-c", RSS_FLOOR, *map(str, ports))
    try:
        await wait_ready(f"http://127.0.0.1:{ports[1]}/healthz")
        await asyncio.sleep(1.0)
        return rss_mib(floor.pid)
    finally:
        floor.terminate()
        await asyncio.wait_for(floor.wait(), timeout=10)


def run(requests: int) -> dict[str, Any]:
    """Start the processes, measure, stop them."""
    ports = (free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), *ports)
        procs = start(config, ports[0])
        try:
            return asyncio.run(measure_all(procs[1].pid, ports, requests))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def summarize(
    direct: list[float], proxied: list[float], idle: float, loaded: float
) -> dict[str, Any]:
    """The result record."""
    d50, d99 = percentile(direct, 50), percentile(direct, 99)
    p50, p99 = percentile(proxied, 50), percentile(proxied, 99)
    return {
        "requests_per_path": len(direct),
        "request_bytes": len(json.dumps(REQUEST)),
        "direct_p50_ms": round(d50, 3),
        "direct_p99_ms": round(d99, 3),
        "proxied_p50_ms": round(p50, 3),
        "proxied_p99_ms": round(p99, 3),
        "added_p50_ms": round(p50 - d50, 3),
        "added_p99_ms": round(p99 - d99, 3),
        "ratio_p50": round(p50 / d50, 2),
        "idle_rss_mib": idle,
        "rss_after_load_mib": loaded,
        **policy_cost_us(),
        "targets": {"added_p50_ms": 1.0, "added_p99_ms": 5.0, "idle_rss_mib": 40.0},
        "cpus": os.cpu_count(),
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        ("", "p50 ms", "p99 ms"),
        (
            "direct to upstream",
            f"{results['direct_p50_ms']:.3f}",
            f"{results['direct_p99_ms']:.3f}",
        ),
        ("through sidecar", f"{results['proxied_p50_ms']:.3f}", f"{results['proxied_p99_ms']:.3f}"),
        ("added by sidecar", f"{results['added_p50_ms']:.3f}", f"{results['added_p99_ms']:.3f}"),
    ]
    lines = [f"{a:<22}{b:>10}{c:>10}" for a, b, c in rows]
    lines += [
        f"ratio (p50)           {results['ratio_p50']:>10}",
        f"requests per path     {results['requests_per_path']:>10}",
        f"idle RSS (MiB)        {results['idle_rss_mib']:>10}",
        f"floor idle RSS (MiB)  {results['floor_idle_rss_mib']:>10}",
        f"ratio (idle RSS)      {results['ratio_idle_rss']:>10}",
        f"RSS after load (MiB)  {results['rss_after_load_mib']:>10}",
        f"policy check (µs/req) {results['policy_check_us_per_request']:>10}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path")
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS}")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    results = run(args.requests)
    print(table(results))
    if args.json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
