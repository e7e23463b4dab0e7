"""Benchmark of budgets: what the check costs a call, and how often sidecars ask for leases.

Run: ``python benchmarks/bench_budgets.py [--seconds N] [--json]``

- **Check cost** (in-process): the budget admission and settlement a call goes through
  (:class:`promethios.sidecar.budgetgate.BudgetGate`: worst case reserved on three leases,
  tokens, requests and cost, then charged what the provider reported), beside its floor:
  the same gate when no budget applies (what every call paid before budgets).
- **Added latency** (end to end): the same 1 KB call through a real sidecar process whose
  policy has those three budgets and through one without, alternating rounds, both in
  front of the fake provider of ``bench_sidecar.py``; the budgeted one takes its leases
  from a real ingest API served in this process (usage in memory).
- **Allowance traffic**: two sidecar processes of one agent (two replicas), each sent
  100 calls/s (open loop) for ``--seconds``; the ingest counts their allowance exchanges.
  Floor: a budget checked with a round trip per call, 100 requests/s per replica.

With ``--json`` the results are also written to ``benchmarks/results/budgets.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench_sidecar import CLI, REQUEST, call, free_port, percentile, wait_ready

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "budgets.json"
AGENT = "bench/agent"
BUDGETS = [
    {"name": "tokens", "window": "Month", "tokens": 10**12},
    {"name": "calls", "window": "Day", "requests": 10**9},
    {"name": "spend", "window": "Month", "cost": 10**8},
]
PRICING = {"default": {"inputPerMillion": 2.5, "outputPerMillion": 10}}
TARGET_CHECK_US = 20.0
TARGET_EXCHANGES_PER_SECOND = 1.0


# -- the check, in process ------------------------------------------------------------------


def check_cost_us(iterations: int = 50_000) -> dict[str, float]:
    """Microseconds per call of the budget gate: three leases, and no budget (the floor)."""
    from promethios.api.allowance import AllowanceResponse
    from promethios.sidecar.budget import BudgetBook
    from promethios.sidecar.budgetgate import BudgetGate
    from promethios.sidecar.relay import CallInfo
    from promethios.sidecar.usage import CallMeter

    now = time.time()
    answer = AllowanceResponse.model_validate(
        {
            "budgets": [
                {
                    "budget": f"bench/{b['name']}",
                    "scope": "Agent",
                    "window": b["window"],
                    "windowStart": "2000-01-01T00:00:00Z",
                    "resetAt": now + 86_400,
                    "tokens": "tokens" in b,
                    "requests": "requests" in b,
                    "cost": "cost" in b,
                    "prices": [{"inputPerMillion": 2.5, "outputPerMillion": 10}],
                    "whenIngestUnreachable": "FailOpen",
                    "leaseSeconds": 60,
                    "outputTokensPerCall": 4096,
                }
                for b in BUDGETS
            ],
            "leases": [
                {
                    "budget": f"bench/{b['name']}",
                    "windowStart": "2000-01-01T00:00:00Z",
                    "granted": {"tokens": 10**15, "requests": 10**15, "cost": 10**15},
                    "consumed": {},
                    "returned": {},
                }
                for b in BUDGETS
            ],
        }
    )
    engine = SimpleNamespace(enforce=True)
    info = CallInfo("gpt-bench", 1000, sent_bytes=1200, output_cap=300)

    def gate(book: BudgetBook) -> BudgetGate:
        state = SimpleNamespace(budgets=book, clock=time.monotonic, wall_clock=time.time)
        return BudgetGate(state, None)

    held = BudgetBook(frozenset(f"bench/{b['name']}" for b in BUDGETS))
    held.apply(answer, time.monotonic())
    results = {}
    for name, subject in (("budget_check_us", gate(held)), ("floor_check_us", gate(BudgetBook()))):

        async def loop(subject: BudgetGate = subject) -> float:
            started = time.perf_counter()
            for _ in range(iterations):
                meter = CallMeter("chat", "gpt-bench", 200, (250, 300))
                reservation = await subject.admit(engine, info, "/v1/chat/completions")
                subject.settle(reservation, meter, info)
            return (time.perf_counter() - started) / iterations * 1e6

        results[name] = round(min(asyncio.run(loop()) for _ in range(3)), 2)
    results["added_check_us"] = round(results["budget_check_us"] - results["floor_check_us"], 2)
    return results


# -- processes --------------------------------------------------------------------------------


async def start_ingest(port: int) -> Any:
    """A real ingest API on ``port`` (plain HTTP), knowing the agent and the policy."""
    from promethios.api.agent import parse_agent
    from promethios.ingest.agents import AgentConfig
    from promethios.ingest.main import start_ingest as start
    from promethios.ingest.settings import IngestSettings

    class NoStatus:
        async def apply_status(self, namespace: str, name: str, status: Any) -> int:
            return 200

    settings = IngestSettings(
        host="127.0.0.1",
        port=port,
        metrics_port=0,
        allowance_rate_per_second=1e4,
        allowance_rate_burst=10**4,
        rate_per_second=1e4,
        rate_burst=10**4,
    )
    runner = await start(settings, status_sink=NoStatus())
    service = runner.service
    service.keystore.add_key("bench-key", AGENT, "bench-gid")
    body = {
        "metadata": {"namespace": "bench", "name": "agent", "uid": "u"},
        "spec": {
            "image": "a",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": "bench"}},
        },
    }
    service.upsert_agent(AgentConfig(parse_agent(body)))
    service.policy_seen(
        {
            "metadata": {"namespace": "bench", "name": "bench", "resourceVersion": "1"},
            "spec": {"budgets": BUDGETS, "pricing": PRICING},
        }
    )
    return runner


def sidecar_config(directory: Path, upstream: int, ingest: int, budgets: bool) -> tuple[Path, int]:
    """A sidecar config (with or without the budgets) and its proxy port."""
    directory.mkdir()
    (directory / "api-key").write_text("bench-key")
    (directory / "provider").write_text("sk-bench-credential")
    proxy = free_port()
    config = {
        "agentId": AGENT,
        "governanceIdentity": "bench-gid",
        "policyName": "bench",
        "policy": {"budgets": BUDGETS, "pricing": PRICING} if budgets else {},
        "provider": {
            "type": "openai",
            "baseUrl": f"http://127.0.0.1:{upstream}/v1",
            "credentialFile": str(directory / "provider"),
        },
        "ingest": {"url": f"http://127.0.0.1:{ingest}", "apiKeyFile": str(directory / "api-key")},
        "proxyPort": proxy,
        "metricsPort": free_port(),
        "spoolDir": str(directory / "spool"),
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path, proxy


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.Popen(argv, env=env)


def sidecar_process(config: Path) -> subprocess.Popen[bytes]:
    return spawn(
        [sys.executable, "-c", CLI, "sidecar", "--config", str(config), "--log-level", "WARNING"]
    )


async def latency(urls: dict[str, str], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Latencies (ms) through each sidecar, alternating rounds (both see the same load)."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as session:
        for url in urls.values():
            for _ in range(50):
                await call(session, url)
        for _ in range(rounds):
            for name, url in urls.items():
                for _ in range(per_round):
                    samples[name].append(await call(session, url))
    return samples


async def open_loop(url: str, rate: float, seconds: float) -> list[int]:
    """``rate`` calls per second for ``seconds`` (not waiting for answers); their statuses."""
    statuses: list[int] = []

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.post(url, json=REQUEST) as response:
            await response.read()
            statuses.append(response.status)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        loop = asyncio.get_running_loop()
        start, tasks = loop.time(), []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            tasks.append(asyncio.create_task(one(session)))
        await asyncio.gather(*tasks)
    return statuses


def exchanges_and_writes(registry: Any) -> tuple[float, float]:
    """Allowance exchanges and usage writes so far, as the ingest's metrics count them."""
    exchanges = sum(
        registry.get_sample_value("promethios_budget_allowance_requests_total", {"result": r})
        or 0.0
        for r in ("ok", "exhausted", "unavailable")
    )
    writes = registry.get_sample_value("promethios_budget_usage_writes_total", {"result": "ok"})
    return exchanges, writes or 0.0


async def measure(tmp: Path, seconds: float, requests: int) -> dict[str, Any]:
    upstream_port, ingest_port = free_port(), free_port()
    upstream = spawn(
        [
            sys.executable,
            str(ROOT / "benchmarks/bench_sidecar.py"),
            "--serve-upstream",
            str(upstream_port),
        ]
    )
    ingest = await start_ingest(ingest_port)
    configs = {
        "plain": sidecar_config(tmp / "plain", upstream_port, ingest_port, budgets=False),
        "budgeted": sidecar_config(tmp / "budgeted", upstream_port, ingest_port, budgets=True),
        "replica": sidecar_config(tmp / "replica", upstream_port, ingest_port, budgets=True),
    }
    processes = [upstream] + [sidecar_process(path) for path, _ in configs.values()]
    try:
        await wait_ready(f"http://127.0.0.1:{upstream_port}/v1/models")
        for _, port in configs.values():
            await wait_ready(f"http://127.0.0.1:{port}/healthz")
        urls = {
            name: f"http://127.0.0.1:{port}/v1/chat/completions"
            for name, (_, port) in configs.items()
        }
        samples = await latency({k: urls[k] for k in ("plain", "budgeted")}, 10, requests // 10)
        registry = ingest.service.metrics.registry
        before, writes_before = exchanges_and_writes(registry)
        started = time.monotonic()
        loads = await asyncio.gather(
            *(open_loop(urls[name], 100.0, seconds) for name in ("budgeted", "replica"))
        )
        elapsed = time.monotonic() - started
        after, writes_after = exchanges_and_writes(registry)
        writes = writes_after - writes_before
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        await ingest.stop()
    plain, budgeted = samples["plain"], samples["budgeted"]
    exchanges = after - before
    return {
        "plain_p50_ms": round(percentile(plain, 50), 3),
        "plain_p99_ms": round(percentile(plain, 99), 3),
        "budgeted_p50_ms": round(percentile(budgeted, 50), 3),
        "budgeted_p99_ms": round(percentile(budgeted, 99), 3),
        "added_p50_ms": round(percentile(budgeted, 50) - percentile(plain, 50), 3),
        "load_seconds": round(elapsed, 1),
        "load_calls_ok": sum(s.count(200) for s in loads),
        "load_calls_sent": sum(len(s) for s in loads),
        "replicas": 2,
        "exchanges": int(exchanges),
        "exchanges_per_second_per_replica": round(exchanges / elapsed / 2, 3),
        "floor_requests_per_second_per_replica": 100.0,
        "usage_writes_per_second": round(writes / elapsed, 3),
    }


def run(seconds: float, requests: int) -> dict[str, Any]:
    results = check_cost_us()
    with tempfile.TemporaryDirectory() as tmp:
        results.update(asyncio.run(measure(Path(tmp), seconds, requests)))
    results["ratio_exchanges_to_per_call"] = round(
        results["exchanges_per_second_per_replica"]
        / results["floor_requests_per_second_per_replica"],
        4,
    )
    results["targets"] = {
        "added_check_us": TARGET_CHECK_US,
        "exchanges_per_second_per_replica": TARGET_EXCHANGES_PER_SECOND,
    }
    results["cpus"] = os.cpu_count()
    return results


def table(r: dict[str, Any]) -> str:
    rows = [
        (
            "budget check, 3 leases (µs/call)",
            r["budget_check_us"],
            "floor, no budget",
            r["floor_check_us"],
        ),
        ("added by the check (µs/call)", r["added_check_us"], "target", TARGET_CHECK_US),
        (
            "through sidecar with budgets p50 (ms)",
            r["budgeted_p50_ms"],
            "without",
            r["plain_p50_ms"],
        ),
        (
            "through sidecar with budgets p99 (ms)",
            r["budgeted_p99_ms"],
            "without",
            r["plain_p99_ms"],
        ),
        (
            "allowance exchanges/s per replica",
            r["exchanges_per_second_per_replica"],
            "floor (a round trip per call)",
            r["floor_requests_per_second_per_replica"],
        ),
        (
            "ratio to the per-call round trip",
            r["ratio_exchanges_to_per_call"],
            "target/s",
            TARGET_EXCHANGES_PER_SECOND,
        ),
        (
            "usage writes/s (2 replicas, 3 budgets)",
            r["usage_writes_per_second"],
            "calls ok",
            r["load_calls_ok"],
        ),
    ]
    return "\n".join(f"{a:<40}{b!s:>10}   {c:<30}{d!s:>8}" for a, b, c, d in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 100/s load")
    parser.add_argument("--requests", type=int, default=2000, help="latency samples per path")
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    results = run(args.seconds, args.requests)
    print(table(results))
    if args.json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    ok = (
        results["added_check_us"] <= TARGET_CHECK_US
        and results["exchanges_per_second_per_replica"] <= TARGET_EXCHANGES_PER_SECOND
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
