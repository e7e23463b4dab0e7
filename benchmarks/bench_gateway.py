"""Benchmark of the egress lock's gateway: the latency it adds beside the sidecar's.

Run: ``python benchmarks/bench_gateway.py`` (root, after ``make testenv e2e-images``).

The gateway's cost is a network hop, which only real pods show: so this runs the
real-pod benchmark ``tests/e2e/test_egress_lock.py::test_bench_gateway_latency_beside_the_sidecar``
(a local cluster with a real kubelet node, kube-router enforcing the NetworkPolicies).
From inside an agent container, 300 chat completions on one kept-alive connection, five
runs per path, alternating:

- floor: straight to the fake provider's pod (one pod-to-pod hop, no governance);
- sidecar (egress Open): to the sidecar on localhost, which forwards to the provider;
- gateway (egress Locked): to the agent's gateway Service, which forwards to the provider.

It prints the best run's p50/p99 of each path, the latency each adds over the floor and
their ratios, as written to ``benchmarks/results/gateway.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gateway.json"
TEST = "tests/e2e/test_egress_lock.py::test_bench_gateway_latency_beside_the_sidecar"


def table(results: dict[str, float]) -> str:
    rows = [f"{'':<26}{'p50 ms':>10}{'p99 ms':>10}"]
    for path, label in (("floor", "floor (direct, one hop)"), ("sidecar", "through the sidecar"),
                        ("gateway", "through the gateway")):  # fmt: skip
        rows.append(
            f"{label:<26}{results[f'{path}_p50_ms']:>10.3f}{results[f'{path}_p99_ms']:>10.3f}"
        )
    rows += [
        f"{'added by the sidecar':<26}{results['sidecar_added_p50_ms']:>10.3f}",
        f"{'added by the gateway':<26}{results['gateway_added_p50_ms']:>10.3f}",
        f"{'ratio gateway/sidecar':<26}{results['ratio_gateway_to_sidecar_p50']:>10}",
        f"{'ratio sidecar/floor':<26}{results['ratio_sidecar_to_floor_p50']:>10}",
        f"{'ratio gateway/floor':<26}{results['ratio_gateway_to_floor_p50']:>10}",
    ]
    return "\n".join(rows)


def main() -> int:
    before = RESULTS.stat().st_mtime if RESULTS.exists() else None
    env = {**os.environ, "PROMETHIOS_GATEWAY_BENCH_OUT": str(RESULTS)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
                         cwd=ROOT, env=env, check=False)  # fmt: skip
    if run.returncode != 0 or not RESULTS.exists() or RESULTS.stat().st_mtime == before:
        print(f"the gateway benchmark did not run (pytest exit {run.returncode})")
        return 1
    print(table(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
