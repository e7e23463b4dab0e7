"""Benchmark: N GovernedAgents created at once until all are Ready, beside its floor.

Runs on a fresh local control plane (``promethios.localcluster.LocalCluster``):

1. the operator (``promethios operator`` subprocess): create N agents in one
   ``kubectl apply``; measure time until every agent has ``Ready=True``, API
   requests per agent (the API server's ``apiserver_request_total``, all clients,
   minus the benchmark's own polling), and the operator's peak RSS;
2. the floor: a bare client creating the same child objects directly (server-side
   apply, same shared client, no rate limit either), waiting until every Deployment
   has its pod ready.

Usage: ``python benchmarks/bench_operator.py [--agents 100] [--agents 500]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from promethios.api.governedagent import GovernedAgentSpec
from promethios.api.policy import GovernancePolicySpec
from promethios.builders import (
    BuildSettings,
    KeyState,
    build_api_key_secret,
    build_config_map,
    build_deployment,
    build_service,
    build_sidecar_config,
)
from promethios.builders.apikey import generate_api_key
from promethios.builders.meta import Agent
from promethios.kube import apply as kapply
from promethios.kube.client import ClientSettings, reset_shared_client, shared_client
from promethios.localcluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "image": "example.com/agent:1",
    "modelProvider": {"type": "openai", "credentialsSecretRef": {"name": "openai-credentials"}},
    "governance": {"policyRef": {"name": "policy"}},
}


def request_total(cluster: LocalCluster) -> float:
    """Sum of apiserver_request_total over every label set."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def prepare_namespace(cluster: LocalCluster, ns: str) -> None:
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "openai-credentials",
        "--from-literal=apiKey=sk-bench",
    )
    policy = {
        "apiVersion": "governance.promethios.ai/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "policy", "namespace": ns},
        "spec": {},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(policy))


class PeakRss(threading.Thread):
    """Samples a process's RSS every 100 ms; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


def poll_until(cluster: LocalCluster, args: list[str], done: Any, timeout: float) -> int:
    """Poll ``kubectl get ... -o json`` until ``done(items)``; the number of polls."""
    polls, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        polls += 1
        items = json.loads(cluster.kubectl(*args, "-o", "json").stdout)["items"]
        if done(items):
            return polls
        time.sleep(0.5)
    raise TimeoutError(f"not done after {timeout} s")


def all_ready(count: int) -> Any:
    def check(items: list[dict[str, Any]]) -> bool:
        ready = sum(
            1
            for item in items
            for c in (item.get("status") or {}).get("conditions") or []
            if c["type"] == "Ready" and c["status"] == "True"
        )
        return ready >= count

    return check


def deployments_ready(count: int) -> Any:
    def check(items: list[dict[str, Any]]) -> bool:
        return sum(1 for i in items if (i.get("status") or {}).get("readyReplicas") == 1) >= count

    return check


def run_operator(cluster: LocalCluster, count: int) -> dict[str, float]:
    ns = f"bench-op-{count}"
    prepare_namespace(cluster, ns)
    argv = [
        sys.executable,
        "-m",
        "promethios.cli",
        "operator",
        f"--kubeconfig={cluster.kubeconfig}",
        "--no-ingest",
        "--liveness-port=0",
        "--resync-seconds=3600",
    ]
    log = open(f"/tmp/bench-operator-{count}.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    rss = PeakRss(process.pid)
    rss.start()
    try:
        time.sleep(3)  # startup: login, watches, initial listings
        agents = [
            {
                "apiVersion": "governance.promethios.ai/v1alpha1",
                "kind": "GovernedAgent",
                "metadata": {"name": f"agent-{i}", "namespace": ns},
                "spec": SPEC,
            }
            for i in range(count)
        ]
        before = request_total(cluster)
        start = time.monotonic()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": agents}),
        )
        polls = poll_until(cluster, ["-n", ns, "get", "governedagents"], all_ready(count), 600)
        seconds = time.monotonic() - start
        time.sleep(2)  # trailing status writes of the last rollouts
        requests = request_total(cluster) - before - polls - count - 2
        return {
            "seconds": seconds,
            "requests_per_agent": requests / count,
            "peak_rss_mib": rss.peak / 2**20,
        }
    finally:
        rss.done.set()
        process.terminate()
        process.wait(15)


def run_floor(cluster: LocalCluster, count: int) -> dict[str, float]:
    """The same children, written directly by a bare client: the least the work costs."""
    ns = f"bench-floor-{count}"
    prepare_namespace(cluster, ns)
    reset_shared_client()
    client = shared_client(ClientSettings(kubeconfig=str(cluster.kubeconfig)))
    settings = BuildSettings()
    spec = GovernedAgentSpec.model_validate(SPEC)
    before = request_total(cluster)
    start = time.monotonic()
    for i in range(count):
        agent = Agent(name=f"agent-{i}", namespace=ns, uid=str(uuid.uuid4()), spec=spec)
        config = build_sidecar_config(agent, "policy", GovernancePolicySpec(), settings)
        config_map, digest = build_config_map(agent, config)
        for manifest in (
            build_api_key_secret(agent, KeyState(generate_api_key(), 0)),
            config_map,
            build_deployment(agent, settings, digest, None),
            build_service(agent),
        ):
            manifest["metadata"].pop("ownerReferences")  # no owner exists in the floor run
            kapply.apply(client, manifest)
    polls = poll_until(cluster, ["-n", ns, "get", "deployments"], deployments_ready(count), 600)
    seconds = time.monotonic() - start
    time.sleep(2)
    requests = request_total(cluster) - before - polls - 2
    return {"seconds": seconds, "requests_per_agent": requests / count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, action="append", help="agent count (repeatable)")
    counts = parser.parse_args().agents or [100]
    with LocalCluster(nodes=2) as cluster:
        crds = sorted(str(p) for p in (ROOT / "crds").glob("*.yaml"))
        cluster.kubectl("apply", "--server-side", *[a for c in crds for a in ("-f", c)])
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        for count in counts:
            op = run_operator(cluster, count)
            floor = run_floor(cluster, count)
            print(f"agents={count}")
            print(
                f"  operator: {op['seconds']:.1f} s to all Ready, "
                f"{op['requests_per_agent']:.1f} API requests/agent, "
                f"peak RSS {op['peak_rss_mib']:.0f} MiB"
            )
            print(
                f"  floor:    {floor['seconds']:.1f} s to all pods ready, "
                f"{floor['requests_per_agent']:.1f} API requests/agent"
            )
            print(
                f"  ratio:    time x{op['seconds'] / floor['seconds']:.2f}, "
                f"requests x{op['requests_per_agent'] / floor['requests_per_agent']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
