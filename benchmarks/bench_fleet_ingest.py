"""Ingest API at fleet scale (a script, not a test): N agents heartbeating over HTTPS,
each with its own key, beside a floor; the summary endpoint over those N agents.

Run: ``.venv/bin/python benchmarks/bench_fleet_ingest.py [--agents 10000] [--interval 30]
[--warmup 45] [--seconds 90] [--floor-seconds S] [--json]``

Both servers serve TLS with the same certificate and run alone in a child process each
(their own interpreter, GIL and event loop); the load generator runs in this process:

- **ingest**: the real ingest app (``start_ingest``) with N agents and their keys, its
  status writes going to a counting sink (no API server: what is counted is what it
  would send). Every agent sends one heartbeat per ``--interval`` (open loop, evenly
  spread: N / interval requests/s over keep-alive connections). The first interval is a
  warm-up (every agent's first report is a transition and is written at once); then, for
  ``--seconds``: status writes/s, on average and in the busiest 10 s (the fleet-wide
  budget, ``write_budget_per_second``, must hold both at 20/s or less; heartbeat-only
  refreshes of N agents come due N / 20 s after their first write, so a steady-state run
  needs ``--warmup`` past that, e.g. 520 s at 10,000), report latency p50/p99, and the latency of
  ``GET /api/v1/governance/summary?range=1h`` (read token) asked once a second meanwhile.
- **floor**: a bare aiohttp HTTPS server that parses the same heartbeat JSON and answers
  204, and answers the summary path with the ingest's own summary bytes held in memory:
  what a request of that size costs at least, at the same rate in the same run.

With ``--json`` the figures go to ``benchmarks/results/fleet_ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from bench_ingest import (
    PATH,
    CountingSink,
    Latencies,
    Server,
    agent_body,
    key_of,
    open_loop,
    pct,
    raw_request,
)
from promethios import heap
from promethios.api import wire
from promethios.builders.tls import Decision, Renewal, ServingIdentity, issue
from promethios.ingest.agents import config_from_object
from promethios.ingest.keystore import KeyStore
from promethios.ingest.main import start_ingest
from promethios.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fleet_ingest.json"
READ_TOKEN = "bench-read-token"
SUMMARY = f"{wire.PATH_SUMMARY}?range=1h"
BUDGET = IngestSettings().write_budget_per_second
WINDOW = 10  # seconds: the status-write rate is also given for the busiest such window


def write_certificate(directory: Path) -> bytes:
    """A serving certificate for 127.0.0.1 from a new CA; the CA bundle (PEM)."""
    identity = ServingIdentity(dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    material = issue(Decision(Renewal.ALL, "bench"), None, identity, dt.datetime.now(dt.UTC))
    (directory / "tls.crt").write_bytes(material.cert_pem)
    (directory / "tls.key").write_bytes(material.key_pem)
    return material.ca_bundle_pem


# -- servers (child processes) --------------------------------------------------------------


async def _serve_ingest(control: Connection, agents: int, interval: float, tls: Path) -> None:
    settings = IngestSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0,
        tls_cert_file=str(tls / "tls.crt"), tls_key_file=str(tls / "tls.key"),
        read_token=READ_TOKEN,
    )  # fmt: skip
    sink = CountingSink()
    settling = heap.start(settings.gc_settle_seconds)  # as `promethios ingest` settles it
    runner = await start_ingest(settings, status_sink=sink, keystore=KeyStore())
    for i in range(agents):
        runner.service.keystore.add_key(key_of(i), f"bench/agent-{i}", f"gid-{i}")
        body = agent_body("bench", f"agent-{i}")
        body["spec"]["governance"]["heartbeatIntervalSeconds"] = int(interval)
        runner.service.upsert_agent(config_from_object(body))
    await _control_loop(control, runner.port, lambda: sink.writes)
    settling.cancel()


async def _serve_floor(control: Connection, tls: Path) -> None:
    summary_body = b"{}"

    async def heartbeat(request: web.Request) -> web.Response:
        await request.json()
        return web.Response(status=204)

    async def summary(request: web.Request) -> web.Response:
        return web.Response(body=summary_body, content_type="application/json")

    app = web.Application()
    app.router.add_post(PATH, heartbeat)
    app.router.add_get(wire.PATH_SUMMARY, summary)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls / "tls.crt", tls / "tls.key")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=1024)
    await site.start()
    summary_file = tls / "summary.json"

    def load_summary() -> None:
        nonlocal summary_body
        summary_body = summary_file.read_bytes()

    await _control_loop(control, runner.addresses[0][1], lambda: 0, load_summary)


async def _control_loop(
    control: Connection,
    port: int,
    writes: Callable[[], int],
    load: Callable[[], None] | None = None,
) -> None:
    """Answer ``writes`` (the count so far) and ``load`` until told ``stop``."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(control.fileno(), lambda: commands.put_nowait(control.recv()))
    control.send(port)
    while (command := await commands.get()) != "stop":
        if command == "load" and load is not None:
            load()
            control.send("ok")
        else:
            control.send(writes())


def _child(kind: str, control: Connection, agents: int, interval: float, tls: str) -> None:
    if kind == "ingest":
        asyncio.run(_serve_ingest(control, agents, interval, Path(tls)))
    else:
        asyncio.run(_serve_floor(control, Path(tls)))


def start_server(kind: str, agents: int, interval: float, tls: Path) -> Server:
    parent, child = multiprocessing.Pipe()
    args = (kind, child, agents, interval, str(tls))
    process = multiprocessing.Process(target=_child, args=args, daemon=True)
    process.start()
    if not parent.poll(300):
        process.terminate()
        raise RuntimeError(f"{kind} server did not start")
    return Server(kind, process, parent, int(parent.recv()))


# -- load: every agent once per interval, over HTTPS ----------------------------------------


async def heartbeats(
    port: int, context: ssl.SSLContext, agents: int, interval: float, seconds: float, skip: float
) -> Latencies:
    """Open loop: agent ``i % agents`` at ``i * interval / agents``; latencies of the
    requests scheduled after ``skip`` seconds (the warm-up) are kept."""
    requests = [raw_request(i) for i in range(agents)]
    return await open_loop(
        port, agents / interval, skip + seconds, 64,
        requests=requests, skip=skip, context=context, warm_up=False,
    )  # fmt: skip


async def summaries(port: int, context: ssl.SSLContext, until: float) -> tuple[list[float], int]:
    """``GET`` the summary once a second until ``until`` (perf_counter); latencies, size."""
    latencies, size = [], 0
    connector = aiohttp.TCPConnector(ssl=context)
    auth = {"Authorization": f"Bearer {READ_TOKEN}"}
    async with aiohttp.ClientSession(connector=connector) as session:
        while time.perf_counter() < until:
            started = time.perf_counter()
            async with session.get(f"https://127.0.0.1:{port}{SUMMARY}", headers=auth) as answer:
                body = await answer.read()
                assert answer.status == 200, answer.status
            latencies.append(time.perf_counter() - started)
            size = len(body)
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
    return latencies, size


async def write_counts(server: Server, seconds: float) -> list[int]:
    """The server's status-write count, asked once a second for ``seconds``."""
    counts, started = [], time.perf_counter()
    for tick in range(int(seconds) + 1):
        await asyncio.sleep(max(0.0, started + tick - time.perf_counter()))
        counts.append(await asyncio.to_thread(server.ask, "writes"))
    return counts


def busiest_window(counts: list[int], width: int = WINDOW) -> float:
    """The most writes per second over any ``width`` consecutive seconds of ``counts``."""
    if len(counts) <= width:
        return (counts[-1] - counts[0]) / max(1, len(counts) - 1)
    return max(counts[i + width] - counts[i] for i in range(len(counts) - width)) / width


async def measure(
    server: Server, args: argparse.Namespace, ca: bytes, skip: float, seconds: float
) -> dict[str, Any]:
    context = ssl.create_default_context(cadata=ca.decode())
    measured_from = time.perf_counter() + skip
    load = asyncio.create_task(
        heartbeats(server.port, context, args.agents, args.interval, seconds, skip)
    )
    await asyncio.sleep(skip)
    asked = asyncio.create_task(summaries(server.port, context, measured_from + seconds))
    counts = await write_counts(server, seconds)
    latencies = await load
    summary_latencies, size = await asked
    rss = psutil.Process(server.process.pid).memory_info().rss
    return {
        "server_rss_mib": round(rss / 2**20, 1),
        "reports": len(latencies.sent),
        "errors": latencies.errors,
        "report_p50_ms": round(pct(latencies.sent, 0.50), 2),
        "report_p99_ms": round(pct(latencies.sent, 0.99), 2),
        "report_p99_from_schedule_ms": round(pct(latencies.scheduled, 0.99), 2),
        "status_writes_per_second": round((counts[-1] - counts[0]) / seconds, 2),
        f"status_writes_per_second_busiest_{WINDOW}s": round(busiest_window(counts), 2),
        "summary_p50_ms": round(pct(summary_latencies, 0.50), 1),
        "summary_max_ms": round(max(summary_latencies) * 1e3, 1),
        "summary_requests": len(summary_latencies),
        "summary_bytes": size,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as directory:
        tls = Path(directory)
        ca = write_certificate(tls)
        print(f"starting the ingest with {args.agents} agents", flush=True)
        ingest = start_server("ingest", args.agents, args.interval, tls)
        floor = start_server("floor", args.agents, args.interval, tls)
        try:
            print(f"ingest: {args.warmup:g} s warm-up, {args.seconds:g} s measured", flush=True)
            ingest_figures = await measure(ingest, args, ca, args.warmup, args.seconds)
            # The floor serves the ingest's own summary bytes (same size, from memory).
            context = ssl.create_default_context(cadata=ca.decode())
            connector = aiohttp.TCPConnector(ssl=context)
            auth = {"Authorization": f"Bearer {READ_TOKEN}"}
            async with aiohttp.ClientSession(connector=connector) as session:
                url = f"https://127.0.0.1:{ingest.port}{SUMMARY}"
                async with session.get(url, headers=auth) as answer:
                    (tls / "summary.json").write_bytes(await answer.read())
            await asyncio.to_thread(floor.ask, "load")
            floor_seconds = args.floor_seconds or args.seconds
            print(f"floor: {floor_seconds:g} s at the same rate", flush=True)
            floor_figures = await measure(floor, args, ca, 5.0, floor_seconds)
        finally:
            ingest.stop()
            floor.stop()
    return {
        "command": " ".join(["python", "benchmarks/bench_fleet_ingest.py", *sys.argv[1:]]),
        "agents": args.agents,
        "interval_seconds": args.interval,
        "rate_per_second": round(args.agents / args.interval, 1),
        "write_budget_per_second": BUDGET,
        "ingest": ingest_figures,
        "floor": floor_figures,
        "report_p99_ratio": round(
            ingest_figures["report_p99_ms"] / max(floor_figures["report_p99_ms"], 1e-3), 2
        ),
        "summary_p50_ratio": round(
            ingest_figures["summary_p50_ms"] / max(floor_figures["summary_p50_ms"], 1e-3), 2
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=30.0, help="heartbeat interval (s)")
    parser.add_argument("--warmup", type=float, default=45.0, help="not measured (s)")
    parser.add_argument("--seconds", type=float, default=90.0, help="measured (s)")
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=0.0,
        help="the floor's measured window (s; 0: --seconds)",
    )
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(json.dumps(results, indent=2))
    ingest, floor = results["ingest"], results["floor"]
    print(
        f"{args.agents} agents every {args.interval:g} s: status writes "
        f"{ingest['status_writes_per_second']}/s, busiest {WINDOW} s "
        f"{ingest[f'status_writes_per_second_busiest_{WINDOW}s']}/s (budget {BUDGET:g}/s); "
        f"report p99 "
        f"{ingest['report_p99_ms']} ms (floor {floor['report_p99_ms']} ms, "
        f"{results['report_p99_ratio']}x); summary p50 {ingest['summary_p50_ms']} ms "
        f"(floor {floor['summary_p50_ms']} ms, {results['summary_p50_ratio']}x, "
        f"{ingest['summary_bytes']} bytes)"
    )
    if args.json:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
