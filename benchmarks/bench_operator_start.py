"""Benchmark: an operator (re)starting over N agents in sync, beside kopf's own start.

What a restarted operator, or a new leader after a failover, does first: list every
watched kind and reconcile every agent once. kopf 1.45 woke every waiting worker on every
object it listed (quadratic in the objects); ``promethios.controller.kopfpatch`` makes that
linear. The floor is the same start with kopf's own, unpatched ``ToggleSet``, in the same
run on the same control plane, alternated (unpatched, patched, unpatched, patched).

Set-up (not timed): a fresh control plane without Deployment/ReplicaSet controllers (no
pods), N agents created eight POSTs at a time while an operator runs, until every agent has
its four children; that operator is stopped. Then each start is timed from the process's
start until the first agent is reconciled and until every agent is (its log names each
agent once at start-up: "in sync at start-up", or the status it writes).

Usage: ``python benchmarks/bench_operator_start.py [--agents 1000] [--repeat 2] [--json]``;
with ``--json`` the results are written to ``benchmarks/results/operator_start.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_operator import (
    NO_PODS,
    agent_manifests,
    create_agents,
    fresh_cluster,
    prepare_namespace,
    start_operator,
    stop_operator,
    wait_for_children,
)
from promethios_local.localcluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "operator_start.json"
NS = "start"
#: The operator's command line with kopf's ToggleSet left as it is (the floor).
UNPATCHED = (
    "import sys; import promethios.controller.kopfpatch as patch; "
    "patch.apply = lambda: False; from promethios.cli import main; sys.exit(main())"
)
PATCHED = "import sys; from promethios.cli import main; sys.exit(main())"


def timed_start(cluster: LocalCluster, count: int, code: str, label: str) -> dict[str, float]:
    """Seconds from the operator's start to its first and to its last agent reconciled."""
    log_path = Path(f"/tmp/bench-operator-start-{label}.log")
    argv = [sys.executable, "-c", code, "operator", f"--kubeconfig={cluster.kubeconfig}"]
    argv += ["--no-ingest", "--liveness-port=0", "--resync-seconds=3600"]
    argv += [f"--tls-secret-namespace={NS}"]
    began, first = time.monotonic(), None
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            named = set(re.findall(rf"{NS}/(agent-\d+)", log_path.read_text(errors="replace")))
            if named and first is None:
                first = time.monotonic() - began
            if len(named) >= count:
                return {
                    "first_s": round(first or 0.0, 1),
                    "all_s": round(time.monotonic() - began, 1),
                }
            if time.monotonic() - began > 300 + count / 2:
                raise TimeoutError(f"{len(named)}/{count} agents reconciled; see {log_path}")
            time.sleep(0.2)
    finally:
        stop_operator(process)


def measure(count: int, repeat: int) -> dict[str, Any]:
    cluster = fresh_cluster(0, controllers=NO_PODS)
    try:
        prepare_namespace(cluster, NS)
        process, _ = start_operator(cluster, NS, "start-setup", 3600)
        try:
            create_agents(cluster, NS, agent_manifests(NS, count))
            wait_for_children(cluster, NS, count, 600 + count)
        finally:
            stop_operator(process)
        runs: dict[str, list[dict[str, float]]] = {"unpatched": [], "patched": []}
        for i in range(repeat):
            for label, code in (("unpatched", UNPATCHED), ("patched", PATCHED)):
                runs[label].append(timed_start(cluster, count, code, f"{label}-{i}"))
                print(f"  {count} agents, {label}: {runs[label][-1]}", flush=True)
    finally:
        cluster.stop()
    best = {label: min(r["all_s"] for r in found) for label, found in runs.items()}
    return {
        "agents": count,
        "runs": runs,
        "ratio_all": round(best["patched"] / best["unpatched"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, action="append", help="agent count (repeatable)")
    parser.add_argument("--repeat", type=int, default=2, help="starts of each kind, alternated")
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    command = " ".join(["python", "benchmarks/bench_operator_start.py", *sys.argv[1:]])
    results: dict[str, Any] = {"command": command, "cpus": os.cpu_count(), "runs": []}
    for count in args.agents or [1000]:
        results["runs"].append(measure(count, args.repeat))
        print(json.dumps(results["runs"][-1]), flush=True)
    print("| agents | patched: first / all reconciled | unpatched kopf (floor) | ratio (all) |")
    print("|---|---|---|---|")
    for run in results["runs"]:
        cells = [
            ", ".join(f"{r['first_s']} / {r['all_s']} s" for r in run["runs"][label])
            for label in ("patched", "unpatched")
        ]
        print(f"| {run['agents']} | {cells[0]} | {cells[1]} | {run['ratio_all']} |")
    if args.json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
