"""Ingest API benchmark (a script, not a test): latency and throughput against a floor,
auth cost and status writes per heartbeat.

Run: ``.venv/bin/python benchmarks/bench_ingest.py [--seconds 10] [--rate 2000] [--rounds 4]``

Process layout: the ingest app and the *floor* (a minimal aiohttp handler that parses the
same ~300-byte JSON and answers 204) each run alone in a child process with its own
interpreter, GIL and event loop; the load generator runs in this process. Both servers
are up for the whole run and are measured in alternating rounds (floor, ingest, floor,
ingest, ...), so machine noise hits both alike and the ratio is meaningful.

The load generator is a minimal HTTP/1.1 client on raw asyncio transports (keep-alive
connections, one request in flight per connection, prebuilt request bytes), roughly ten
times cheaper per request than aiohttp's client, so at 2,000 requests/s it measures the
server rather than itself.

Measured in one run:
1. p50/p90/p99/max latency of ingest and floor at a fixed rate (open loop: requests are
   scheduled at ``i / rate`` whatever the answers do). "sent" latency runs from writing
   the request to reading the full answer; "sched" runs from the scheduled time (so it
   also counts waiting for a free connection and the generator's own lateness).
   ``ingest/floor`` is the ratio of the two.
2. Closed-loop throughput of both (``--concurrency`` connections, back to back).
3. Inside each server process during the open-loop rounds: GC pauses, event-loop lag and
   (ingest) the longest slice of the status writer's periodic pass, to tell a slow server
   from a slow client.
4. Authentication cost per request (SHA-256 + dict lookup), in µs.
5. Status writes per heartbeat at steady state, 1,000 agents on a simulated clock, for
   heartbeat intervals of 5, 10 and 30 s, next to the policy's formula.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from promethios.api.wire import HeartbeatReport
from promethios.ingest.agents import config_from_object
from promethios.ingest.keystore import KeyStore
from promethios.ingest.main import start_ingest
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings

AGENTS = 1000
PATH = "/api/v1/agents/heartbeat"


def key_of(i: int) -> str:
    return f"bench-key-{i:06d}-0123456789abcdef0123456789"


def payload(i: int) -> bytes:
    """A sidecar-shaped heartbeat (no idempotency key, like the sidecar's), ~300 bytes."""
    body = {
        "agentId": f"bench/agent-{i}",
        "status": "active",
        "uptime": 123456.789,
        "lastActivity": "2024-05-01T10:00:00.123456Z",
        "padding": "x" * 150,
    }
    return json.dumps(body).encode()


def headers(i: int) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key_of(i)}",
        "X-Agent-ID": f"bench/agent-{i}",
        "X-Governance-ID": f"gid-{i}",
        "Content-Type": "application/json",
    }


def raw_request(i: int) -> bytes:
    """The full HTTP/1.1 request for agent ``i``."""
    body = payload(i)
    lines = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers(i).items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


class CountingSink:
    """In-memory status sink that counts writes."""

    def __init__(self) -> None:
        self.writes = 0

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        self.writes += 1
        return 200


def agent_body(namespace: str, name: str) -> dict[str, Any]:
    """A minimal GovernedAgent body (everything else defaulted by the models)."""
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}"},
        "spec": {
            "image": "agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": "policy"}},
        },
    }


def fill(service: IngestService) -> None:
    for i in range(AGENTS):
        service.keystore.add_key(key_of(i), f"bench/agent-{i}", f"gid-{i}")
        service.upsert_agent(config_from_object(agent_body("bench", f"agent-{i}")))


# -- servers (child processes) --------------------------------------------------------------


@dataclass
class Probe:
    """In-server diagnostics: GC pauses, event-loop lag, status-writer tick time."""

    gc_pauses: list[tuple[int, float]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)
    tick_cpu: list[float] = field(default_factory=list)
    _gc_start: float = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses.append((int(info["generation"]), time.perf_counter() - self._gc_start))

    async def watch_loop(self, period: float = 0.005) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            self.lags.append(loop.time() - before - period)

    def timed(self, function: Callable[..., None]) -> Callable[..., None]:
        def wrapper(*args: Any) -> None:
            started, cpu = time.perf_counter(), time.thread_time()
            function(*args)
            self.ticks.append(time.perf_counter() - started)
            self.tick_cpu.append(time.thread_time() - cpu)

        return wrapper

    def reset(self) -> None:
        self.gc_pauses.clear()
        self.lags.clear()
        self.ticks.clear()
        self.tick_cpu.clear()

    def report(self) -> dict[str, Any]:
        by_gen = {g: [p for gen, p in self.gc_pauses if gen == g] for g in (0, 1, 2)}
        lags = sorted(self.lags) or [0.0]
        return {
            "gc": {
                str(g): {"count": len(p), "max_ms": max(p, default=0) * 1e3}
                for g, p in by_gen.items()
            },
            "loop_lag_p99_ms": lags[int(len(lags) * 0.99) - 1] * 1e3 if len(lags) > 1 else 0,
            "loop_lag_max_ms": lags[-1] * 1e3,
            "tick_count": len(self.ticks),
            "tick_max_ms": max(self.ticks, default=0) * 1e3,
            "tick_cpu_max_ms": max(self.tick_cpu, default=0) * 1e3,
        }


async def _serve_ingest(control: Connection) -> None:
    settings = IngestSettings(
        host="127.0.0.1", port=0, metrics_port=0, rate_per_second=1e9, rate_burst=10**9
    )
    runner = await start_ingest(settings, status_sink=CountingSink(), keystore=KeyStore())
    fill(runner.service)
    probe = Probe()
    gc.callbacks.append(probe.on_gc)
    writer = runner.service.writer
    writer.tick_agents = probe.timed(writer.tick_agents)  # type: ignore[method-assign]
    watcher = asyncio.create_task(probe.watch_loop())
    await _control_loop(control, runner.port, probe)
    watcher.cancel()


async def _serve_floor(control: Connection) -> None:
    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    probe = Probe()
    gc.callbacks.append(probe.on_gc)
    watcher = asyncio.create_task(probe.watch_loop())
    await _control_loop(control, runner.addresses[0][1], probe)
    watcher.cancel()


async def _control_loop(control: Connection, port: int, probe: Probe) -> None:
    """Answer the parent's ``reset``/``report`` commands until it says ``stop``."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(control.fileno(), lambda: commands.put_nowait(control.recv()))
    control.send(port)
    while (command := await commands.get()) != "stop":
        if command == "reset":
            probe.reset()
            control.send("ok")
        else:
            control.send(probe.report())


def _child(kind: str, control: Connection) -> None:
    asyncio.run(_serve_ingest(control) if kind == "ingest" else _serve_floor(control))


@dataclass
class Server:
    kind: str
    process: multiprocessing.Process
    control: Connection
    port: int

    def ask(self, command: str) -> Any:
        self.control.send(command)
        return self.control.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.control.send("stop")
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()


def start_server(kind: str) -> Server:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_child, args=(kind, child), daemon=True)
    process.start()
    if not parent.poll(60):
        raise RuntimeError(f"{kind} server did not start")
    return Server(kind, process, parent, int(parent.recv()))


# -- load generator (raw HTTP/1.1 over asyncio transports) ----------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, on_answer: Callable[[_Conn, int], None]) -> None:
        self.on_answer = on_answer
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scheduled = self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled, self.sent = scheduled, time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.find(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.on_answer(self, int(head[9:12]))


@dataclass
class Latencies:
    sent: list[float] = field(default_factory=list)
    scheduled: list[float] = field(default_factory=list)
    errors: int = 0
    late_max: float = 0.0

    def extend(self, other: Latencies) -> None:
        self.sent += other.sent
        self.scheduled += other.scheduled
        self.errors += other.errors
        self.late_max = max(self.late_max, other.late_max)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q) - 1))] * 1e3


async def _connect(
    port: int,
    count: int,
    on_answer: Callable[[_Conn, int], None],
    context: ssl.SSLContext | None = None,
) -> list[_Conn]:
    loop = asyncio.get_running_loop()
    conns = []
    tls = {"ssl": context, "server_hostname": "127.0.0.1"} if context else {}
    for _ in range(count):
        _, protocol = await loop.create_connection(
            lambda: _Conn(on_answer), "127.0.0.1", port, **tls
        )
        conns.append(protocol)
    return conns


async def open_loop(
    port: int,
    rate: float,
    seconds: float,
    connections: int,
    *,
    requests: list[bytes] | None = None,
    skip: float = 0.0,
    context: ssl.SSLContext | None = None,
    warm_up: bool = True,
) -> Latencies:
    """Fixed-rate load (request ``i`` of ``requests`` round-robin at ``i / rate``);
    latencies from send and from the scheduled time, of the requests scheduled after
    ``skip`` seconds (a warm-up measured as load, not kept)."""
    requests = requests or [raw_request(i) for i in range(AGENTS)]
    result = Latencies()
    total = int(rate * seconds)
    done = asyncio.Event()
    answered = 0
    idle: deque[_Conn] = deque()
    backlog: deque[tuple[int, float]] = deque()
    start = 0.0

    def on_answer(conn: _Conn, status: int) -> None:
        nonlocal answered
        now = time.perf_counter()
        if conn.scheduled >= start + skip:
            result.sent.append(now - conn.sent)
            result.scheduled.append(now - conn.scheduled)
            result.errors += status >= 300
        answered += 1
        if backlog:
            i, scheduled = backlog.popleft()
            conn.send(requests[i % len(requests)], scheduled)
        else:
            idle.append(conn)
        if answered == total:
            done.set()

    conns = await _connect(port, connections, on_answer, context)
    if warm_up:  # one request per connection, not measured
        for conn in conns:
            conn.on_answer = lambda c, s: idle.append(c)
        for k, conn in enumerate(conns):
            conn.send(requests[k % len(requests)], 0.0)
        while len(idle) < len(conns):  # noqa: ASYNC110 - a benchmark warm-up
            await asyncio.sleep(0.001)
        for conn in conns:
            conn.on_answer = on_answer
    else:
        idle.extend(conns)
    start = time.perf_counter() + 0.01
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:
            scheduled = start + i / rate
            if i / rate >= skip:
                result.late_max = max(result.late_max, now - scheduled)
            if idle:
                idle.popleft().send(requests[i % len(requests)], scheduled)
            else:
                backlog.append((i, scheduled))
            i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    await asyncio.wait_for(done.wait(), 60 + skip + seconds)
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return result


async def closed_loop(port: int, seconds: float, concurrency: int) -> float:
    """Requests/s with ``concurrency`` connections sending back to back."""
    requests = [raw_request(i) for i in range(AGENTS)]
    count = 0
    deadline = 0.0
    finished = asyncio.Event()
    open_conns = concurrency

    def on_answer(conn: _Conn, status: int) -> None:
        nonlocal count, open_conns
        assert status < 300, status
        count += 1
        if time.perf_counter() < deadline:
            conn.send(requests[count % AGENTS], 0.0)
        else:
            open_conns -= 1
            if not open_conns:
                finished.set()

    conns = await _connect(port, concurrency, on_answer)
    started = time.perf_counter()
    deadline = started + seconds
    for k, conn in enumerate(conns):
        conn.send(requests[k % AGENTS], 0.0)
    await asyncio.wait_for(finished.wait(), seconds + 30)
    elapsed = time.perf_counter() - started
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return count / elapsed


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


async def writes_per_heartbeat(interval: int, minutes: int = 20) -> float:
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
        if second == 240:  # steady state begins after four minutes
            writes_at_warm, beats_at_warm = sink.writes, heartbeats
    await asyncio.sleep(0.01)
    await service.stop()
    return (sink.writes - writes_at_warm) / max(1, heartbeats - beats_at_warm)


def predicted_writes(interval: float, settings: IngestSettings) -> float:
    """The policy's steady-state figure: min(1, H / max(F, B))."""
    period = max(settings.flush_interval_seconds, settings.heartbeat_flush_seconds)
    return min(1.0, interval / period)


# -- driver ---------------------------------------------------------------------------------


def _row(name: str, lat: Latencies) -> str:
    return (
        f"  {name:<7} sent p50 {pct(lat.sent, 0.50):6.2f}  p90 {pct(lat.sent, 0.90):6.2f}  "
        f"p99 {pct(lat.sent, 0.99):6.2f}  max {max(lat.sent) * 1e3:7.2f} ms | "
        f"sched p50 {pct(lat.scheduled, 0.50):6.2f}  p99 {pct(lat.scheduled, 0.99):6.2f} ms | "
        f"n {len(lat.sent)}  errors {lat.errors}"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"cpus": multiprocessing.cpu_count()}
    results["auth_us"] = auth_microseconds()
    print(f"auth: {results['auth_us']:.2f} µs/request ({AGENTS} keys)")

    defaults = IngestSettings()
    flush, beat = defaults.flush_interval_seconds, defaults.heartbeat_flush_seconds
    print(
        f"status writes per heartbeat at steady state, {AGENTS} agents, flush interval "
        f"F={flush:g}s, heartbeat-only flush B={beat:g}s:\n"
        "  formula: writes/heartbeat = min(1, H / max(F, B)) for heartbeat interval H "
        "(nothing but lastHeartbeat/uptime changing)"
    )
    results["writes_per_heartbeat"] = {}
    for interval in (5, 10, 30):
        measured = await writes_per_heartbeat(interval)
        predicted = predicted_writes(interval, defaults)
        results["writes_per_heartbeat"][interval] = {"measured": measured, "formula": predicted}
        print(
            f"  H={interval:>2}s: measured {measured:.4f}  formula {interval}/{max(flush, beat):g}"
            f" = {predicted:.4f}"
        )

    floor = start_server("floor")
    ingest = start_server("ingest")
    servers = (floor, ingest)
    try:
        lat = {s.kind: Latencies() for s in servers}
        per_round = args.seconds / args.rounds
        for server in servers:
            server.ask("reset")
        for _ in range(args.rounds):
            for server in servers:
                lat[server.kind].extend(
                    await open_loop(server.port, args.rate, per_round, args.connections)
                )
        probes = {s.kind: s.ask("report") for s in servers}
        print(
            f"open loop at {args.rate:.0f} req/s, {args.seconds:g} s each in {args.rounds} "
            f"alternating rounds, {args.connections} connections (latency in ms):"
        )
        for server in servers:
            print(_row(server.kind, lat[server.kind]))
        ratio = {
            q: pct(lat["ingest"].sent, q) / max(1e-9, pct(lat["floor"].sent, q))
            for q in (0.5, 0.99)
        }
        print(f"  ingest/floor: p50 x{ratio[0.5]:.2f}, p99 x{ratio[0.99]:.2f}")
        late = max(v.late_max for v in lat.values()) * 1e3
        print(f"  generator lateness max {late:.2f} ms (its own scheduling delay)")
        for kind, probe in probes.items():
            gcs = ", ".join(
                f"gen{g} {v['count']}x max {v['max_ms']:.2f}" for g, v in probe["gc"].items()
            )
            ticks = (
                f", status-writer tick slices {probe['tick_count']}x max "
                f"{probe['tick_max_ms']:.2f} ms wall / {probe['tick_cpu_max_ms']:.2f} ms CPU"
                if probe["tick_count"]
                else ""
            )
            print(
                f"  in {kind}: loop lag p99 {probe['loop_lag_p99_ms']:.2f} max "
                f"{probe['loop_lag_max_ms']:.2f} ms; GC {gcs} ms{ticks}"
            )
        results["open_loop"] = {
            "rate": args.rate,
            **{
                kind: {
                    "p50_ms": pct(v.sent, 0.5),
                    "p90_ms": pct(v.sent, 0.9),
                    "p99_ms": pct(v.sent, 0.99),
                    "max_ms": max(v.sent) * 1e3,
                    "sched_p99_ms": pct(v.scheduled, 0.99),
                    "errors": v.errors,
                    "server": probes[kind],
                }
                for kind, v in lat.items()
            },
            "ratio_p50": ratio[0.5],
            "ratio_p99": ratio[0.99],
        }

        rates: dict[str, list[float]] = {s.kind: [] for s in servers}
        for _ in range(2):
            for server in servers:
                rates[server.kind].append(
                    await closed_loop(server.port, args.seconds / 4, args.concurrency)
                )
        best = {kind: max(values) for kind, values in rates.items()}
        print(f"closed loop, {args.concurrency} connections (best of 2):")
        print(f"  floor  (parse JSON, 204): {best['floor']:8.0f} req/s")
        print(
            f"  ingest (heartbeat, 202):  {best['ingest']:8.0f} req/s   "
            f"ratio {best['ingest'] / best['floor']:.2f}"
        )
        results["closed_loop"] = {**best, "ratio": best["ingest"] / best["floor"]}
    finally:
        for server in servers:
            server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop seconds per server")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--rate", type=float, default=2000.0, help="open-loop requests/s")
    parser.add_argument("--connections", type=int, default=64, help="open-loop connections")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
