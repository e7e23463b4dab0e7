"""Dashboard benchmark (a script, not a test): the fleet page for 1,000 agents, beside a floor.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py [--agents 1000] [--rounds 40] [--json]``

What is measured, in one process and one run:

1. **fleet page**: ``GET /`` through the real aiohttp app (session lookup, the cached
   SubjectAccessReview answers, filtering, the worst-first sort, jinja2 rendering in a worker
   thread, the response), from a signed-in client, over 1,000 agents in 20 namespaces held by
   the watch-fed cache (:class:`~promethios.dashboard.cache.FleetCache`, fed here by the same
   ``apply`` calls the watches make: a list, then 11 updates of every agent, so each row
   draws a 12-point trust trend). No LIST reaches any API server: the reviews come from a
   table, counted, and must be cached (0 reviews per request after the first).
2. **floor**: jinja2 rendering a static HTML table of the same rows and columns from
   precomputed strings (what any server-rendered page of that size costs at least), in the
   same loop of rounds, alternating with (1) so machine noise hits both alike.

Reported: median and p95 of each, their ratio, the page size, and the budget check (the
fleet page's p95 must be within 200 ms). With ``--json`` the figures go to
``benchmarks/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp.test_utils import TestClient, TestServer

from promethios.dashboard.app import build_app
from promethios.dashboard.authz import Authorizer
from promethios.dashboard.cache import FleetCache
from promethios.dashboard.context import Dashboard
from promethios.kube.access import Access, Identity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dashboard.json"
BUDGET_MS = 200.0
TOKEN = "bench-token"
NOW = time.time()

FLOOR_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    "<!doctype html><html><body><table><thead><tr>"
    "{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>"
    "{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>"
    "{% endfor %}</tbody></table></body></html>"
)
HEADERS = ["Agent", "State", "Ready", "Mode", "Trust", "Trend", "Violations", "Total",
           "Heartbeat", "Enforcement", "Policy"]  # fmt: skip


def rfc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def agent(i: int, step: int = 0) -> dict[str, Any]:
    """Agent ``i`` of the fleet: a mix of healthy, stale, quarantined and noisy agents."""
    namespace, name = f"team-{i % 20:02d}", f"agent-{i:04d}"
    action = "Quarantined" if i % 50 == 0 else "Suspended" if i % 70 == 0 else "None"
    history = [{"start": rfc((NOW // 300 - k * 7) * 300), "low": k % 3, "high": k % 2,
                "critical": 1 if k == 0 and i % 9 == 0 else 0} for k in range(i % 6)]  # fmt: skip
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"u{i}",
            "creationTimestamp": rfc(NOW - 86400),
        },
        "spec": {
            "governance": {"policyRef": {"name": f"policy-{i % 5}"}},
            "modelProvider": {"type": "openai"},
        },
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False" if i % 33 == 0 else "True",
                    "reason": "AgentAvailable",
                    "lastTransitionTime": rfc(NOW - 600),
                },
                {
                    "type": "HeartbeatFresh",
                    "status": "False" if i % 17 == 0 else "True",
                    "reason": "HeartbeatReceived",
                    "lastTransitionTime": rfc(NOW - 600),
                },
            ],
            "heartbeat": {"state": "active", "lastHeartbeat": rfc(NOW - i % 90)},
            "governance": {
                "trustScore": round(1 - (i % 40) / 100 - step / 100, 2),
                "violations": {
                    "low": i % 7,
                    "medium": i % 3,
                    "high": i % 2,
                    "critical": 0,
                    "total": i % 7 + i % 3 + i % 2,
                },
                "violationHistory": history,
            },
            "enforcement": {"action": action, "breach": 1 if action != "None" else 0},
        },
    }


class AllowAll:
    """TokenReview and SubjectAccessReview answers from a table (counted)."""

    def __init__(self) -> None:
        self.reviews = 0

    async def review_token(self, token: str) -> Identity | None:
        return Identity("bench", groups=("system:authenticated",)) if token == TOKEN else None

    async def review_access(self, identity: Identity, access: Access) -> bool:
        self.reviews += 1
        return access.namespace != ""  # per namespace: the slower path


def floor_rows(count: int) -> list[list[str]]:
    return [[f"team-{i % 20:02d}/agent-{i:04d}", "Healthy", "True", "enforce", "0.90",
             "", "0 0 1 2", "3", "active · 5s", "none", "policy-1"]
            for i in range(count)]  # fmt: skip


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(agents: int, rounds: int) -> dict[str, Any]:
    cache = FleetCache()  # fed as the watch feeds it: the list, then events
    cache.apply("GovernedAgent", None, "SYNC", {"items": [agent(j) for j in range(agents)]})
    for step in range(1, 12):  # every agent's trust moved: 12-point trends to draw
        for j in range(agents):
            cache.apply("GovernedAgent", None, "MODIFIED", agent(j, step))
    reviewer = AllowAll()
    dashboard = Dashboard(cache=cache, authz=Authorizer(reviewer, time.time))
    rows = floor_rows(agents)
    async with TestClient(TestServer(build_app(dashboard))) as client:
        login = await client.get("/login")
        csrf = (await login.text()).split('name="csrf" value="')[1].split('"')[0]
        signed = await client.post("/login", data={"token": TOKEN, "csrf": csrf})
        assert signed.status == 200, await signed.text()
        first = await client.get("/")
        body = await first.read()
        assert first.status == 200 and body.count(b"<tr data-agent=") == agents
        reviews_after_first = reviewer.reviews
        page_ms, floor_ms = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            response = await client.get("/")
            await response.read()
            page_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            FLOOR_TEMPLATE.render(headers=HEADERS, rows=rows)
            floor_ms.append((time.perf_counter() - started) * 1000)
        assert reviewer.reviews == reviews_after_first, "SubjectAccessReviews were not cached"
    page, floor = statistics.median(page_ms), statistics.median(floor_ms)
    return {
        "agents": agents,
        "namespaces": 20,
        "rounds": rounds,
        "page_bytes": len(body),
        "fleet_p50_ms": round(page, 2),
        "fleet_p95_ms": round(percentile(page_ms, 0.95), 2),
        "floor_p50_ms": round(floor, 2),
        "floor_p95_ms": round(percentile(floor_ms, 0.95), 2),
        "ratio_p50": round(page / floor, 2),
        "reviews_per_request_after_first": 0,
        "budget_ms": BUDGET_MS,
        "within_budget": percentile(page_ms, 0.95) <= BUDGET_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    results = asyncio.run(measure(args.agents, args.rounds))
    print(f"fleet page, {results['agents']} agents in {results['namespaces']} namespaces "
          f"({results['page_bytes'] // 1024} KiB), {results['rounds']} rounds")  # fmt: skip
    for label, key, note in (
        ("fleet page", "fleet", ""),
        ("floor     ", "floor", "   (jinja2, static table of the same size)"),
    ):
        p50, p95 = results[f"{key}_p50_ms"], results[f"{key}_p95_ms"]
        print(f"  {label}  p50 {p50:8.2f} ms   p95 {p95:8.2f} ms{note}")
    print(f"  ratio (p50) {results['ratio_p50']:>8}    budget p95 <= {BUDGET_MS:.0f} ms: "
          f"{'ok' if results['within_budget'] else 'OVER'}")  # fmt: skip
    if args.json:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
