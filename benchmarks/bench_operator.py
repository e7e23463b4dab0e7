"""Benchmark: N GovernedAgents created at once until all are Ready, beside its floor.

Each agent count runs on its own fresh local control plane
(``promethios_local.localcluster.LocalCluster``, with enough kwok nodes for the pods and the
API server's audit log on), in two phases:

1. the operator (``promethios operator`` subprocess, cluster-wide): create N agents in
   one ``kubectl apply``; measure the time until every agent has ``Ready=True``, the
   operator's own API requests until then (from the audit log: user agents
   ``promethios-operator/*`` and kopf's ``kopf/*``), split into writes (create, update,
   patch, delete) and reads (get, list), and the operator's peak RSS;
   then the operator is restarted with ``--resync-seconds`` (default 30) over the agents
   in sync: its requests from start-up to its first resync pass, and during that whole
   pass (for agents in sync: none; the reconcile reads from watch-fed caches);
2. the floor: a bare client creating the same child objects directly (server-side
   apply through the same shared client, which has no client-side rate limit in either
   run), waiting until every Deployment has its pod ready; its requests are counted
   from the audit log the same way (user agent ``promethios-bench-floor``).

``--children`` (for 10,000 agents, where pods would dominate the machine): no Deployment
or ReplicaSet controller (no pods); the agents are created eight POSTs at a time and the
operator is timed from the first POST until every agent's four children exist, its
writes counted until then and once every first status is out (no pod ever becomes
Ready, so each waits its full delay); the floor is timed until its last apply returns.
``--no-restart`` skips the restart measurement.

``--rss-agents 1000`` adds an operator-only run that measures the operator's RSS once
it has reconciled that many agents (time is reported but secondary).

Usage: ``python benchmarks/bench_operator.py [--agents 100] [--agents 500]
[--rss-agents 1000] [--resync-seconds 30] [--children] [--no-restart] [--json]``; with
``--json`` the results are also written to ``benchmarks/results/operator.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import psutil

from promethios.api.agent import Agent
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
from promethios.controller.context import FIRST_STATUS_DELAY
from promethios.kube import apply as kapply
from promethios.kube.client import ClientSettings, reset_shared_client, shared_client
from promethios_local.localcluster import LocalCluster, install_crds

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "operator.json"
SPEC = {
    "image": "example.com/agent:1",
    "modelProvider": {"type": "openai", "credentialsSecretRef": {"name": "openai-credentials"}},
    "governance": {"policyRef": {"name": "policy"}},
}
OPERATOR_AGENTS = ("promethios-operator/", "kopf/")
FLOOR_AGENT = "promethios-bench-floor"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
READS = {"get", "list"}
PODS_PER_NODE = 100  # kwok nodes hold 110 pods; leave room for the odd extra
TARGETS = {"time_ratio": 2.0, "writes_per_agent": 5.0, "rss_mib_at_1000": 150.0}
#: Controllers for ``--children``: no Deployment or ReplicaSet controller, so no pods.
NO_PODS = "*,-deployment,-replicaset"


# --------------------------------------------------------------------------- audit log


@dataclass
class Requests:
    """Requests of one client class, from the audit log: verbs and what they touched."""

    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    watches: int = 0

    def per_agent(self, count: int) -> dict[str, Any]:
        return {
            "writes_per_agent": round(sum(self.writes.values()) / count, 2),
            "reads_per_agent": round(sum(self.reads.values()) / count, 2),
            "watches": self.watches,
            "writes_by_kind": {k: round(v / count, 2) for k, v in sorted(self.writes.items())},
            "reads_by_kind": {k: round(v / count, 2) for k, v in sorted(self.reads.items())},
        }


class AuditLog:
    """Counts requests in the API server's audit log from a remembered offset."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        """End of the last complete line: the apiserver may be mid-way through writing one."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        return data.rfind(b"\n") + 1

    def count(self, start: int, end: int, user_agents: tuple[str, ...]) -> Requests:
        """Requests by clients whose user agent starts with one of ``user_agents``."""
        found = Requests()
        with self.path.open("rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
        for line in data.splitlines():
            event = json.loads(line)
            if not str(event.get("userAgent", "")).startswith(user_agents):
                continue
            verb, stage = event.get("verb"), event.get("stage")
            if verb == "watch":
                found.watches += stage == "ResponseStarted"
                continue
            if stage != "ResponseComplete":
                continue
            ref = event.get("objectRef") or {}
            what = f"{verb} {ref.get('resource', event.get('requestURI'))}"
            if ref.get("subresource"):
                what += f"/{ref['subresource']}"
            if verb in WRITES:
                found.writes[what] += 1
            elif verb in READS:
                found.reads[what] += 1
        return found


# --------------------------------------------------------------------------- helpers


def agent_manifests(ns: str, count: int) -> list[dict[str, Any]]:
    """``count`` GovernedAgents named ``agent-<i>`` with the benchmark's spec."""
    return [
        {
            "apiVersion": "governance.promethios.ai/v1alpha1",
            "kind": "GovernedAgent",
            "metadata": {"name": f"agent-{i}", "namespace": ns},
            "spec": SPEC,
        }
        for i in range(count)
    ]


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
    """Samples a process's RSS every 100 ms; ``peak`` and ``last`` in bytes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.done = psutil.Process(pid), threading.Event()
        self.peak = self.last = 0

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.last = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)


def poll_until(cluster: LocalCluster, args: list[str], done: Any, timeout: float) -> None:
    """Poll ``kubectl get ... -o json`` until ``done(items)`` (slower for many objects)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(cluster.kubectl(*args, "-o", "json", timeout=120).stdout)["items"]
        if done(items):
            return
        time.sleep(max(0.5, len(items) / 500))
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


def object_count(cluster: LocalCluster, ns: str, path: str) -> int:
    """How many objects a namespaced list holds, from one item and the server's count of
    the rest (``remainingItemCount``): cheap at 10,000 objects, unlike a full listing."""
    answer = json.loads(
        cluster.kubectl("get", "--raw", f"{path.format(ns=ns)}?limit=1", timeout=60).stdout
    )
    return len(answer["items"]) + int(answer["metadata"].get("remainingItemCount") or 0)


#: The children of every agent, by list path (the Service is the last the reconcile applies).
CHILDREN = {
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
}


def wait_for_children(
    cluster: LocalCluster, ns: str, count: int, timeout: float, rss: PeakRss | None = None
) -> None:
    """Until every agent's four children exist (the credentials Secret and the
    ConfigMap kube-root-ca.crt are there beforehand), printing progress."""
    deadline, last_print = time.monotonic() + timeout, 0.0
    extra = {"Secret": 1, "ConfigMap": 1}
    while time.monotonic() < deadline:
        services = object_count(cluster, ns, CHILDREN["Service"])
        if time.monotonic() - last_print > 15:
            memory = f", operator RSS {rss.last / 2**20:.0f} MiB" if rss else ""
            print(f"  {ns}: {services}/{count} agents have all children{memory}", flush=True)
            last_print = time.monotonic()
        if services >= count:
            counts = {
                k: object_count(cluster, ns, p) - extra.get(k, 0) for k, p in CHILDREN.items()
            }
            if all(n >= count for n in counts.values()):
                return
        time.sleep(max(1.0, count / 2000))
    raise TimeoutError(f"children not all applied after {timeout} s")


def wait_for_operator_start(log_path: Path, timeout: float = 60.0) -> None:
    """Until kopf has started its watches (its startup handlers have run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "API server minor version" in log_path.read_text(errors="replace"):
            time.sleep(2)  # login, then the initial listings of each watched kind
            return
        time.sleep(0.2)
    raise TimeoutError(f"operator did not start; see {log_path}")


# --------------------------------------------------------------------------- the two runs


def log_count(log_path: Path, line: str) -> int:
    return log_path.read_text(errors="replace").count(line)


def measure_restart(
    cluster: LocalCluster, ns: str, count: int, interval: float
) -> tuple[Requests, Requests]:
    """Restart the operator with a short resync interval over ``count`` agents in sync:
    its requests from start-up until the first resync pass that begins after every agent's
    start-up reconcile, and during that pass."""
    audit = AuditLog(cluster.audit_log_path or Path("/nonexistent"))
    started = audit.offset()
    process, log_path = start_operator(cluster, ns, f"{count}-restart", interval)
    try:
        # The first pass after every agent's start-up reconcile (kopf fills its indexes
        # first; a pass that begins before reads with GETs, as it must).
        deadline = time.monotonic() + 2 * interval + 120 + count / 5
        while log_count(log_path, "in sync at start-up") < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the agents were not all reconciled; see {log_path}")
            time.sleep(0.2)
        passes = log_count(log_path, "resync pass starting")
        while log_count(log_path, "resync pass starting") == passes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no resync pass began; see {log_path}")
            time.sleep(0.1)
        pass_start, done = audit.offset(), log_count(log_path, "resync pass:")
        while log_count(log_path, "resync pass:") == done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the resync pass did not finish; see {log_path}")
            time.sleep(0.1)
        pass_end = audit.offset()
    finally:
        stop_operator(process)
    return (
        audit.count(started, pass_start, OPERATOR_AGENTS),
        audit.count(pass_start, pass_end, OPERATOR_AGENTS),
    )


def start_operator(
    cluster: LocalCluster, ns: str, label: str, resync: float
) -> tuple[subprocess.Popen[bytes], Path]:
    """``promethios operator`` (cluster-wide, no ingest) logging to /tmp; once started."""
    argv = [
        sys.executable,
        "-m",
        "promethios.cli",
        "operator",
        f"--kubeconfig={cluster.kubeconfig}",
        "--no-ingest",
        "--liveness-port=0",
        f"--resync-seconds={resync:g}",
        # The ingest certificate's Secret (issued once, before the first reconcile).
        f"--tls-secret-namespace={ns}",
    ]
    log_path = Path(f"/tmp/bench-operator-{label}.log")
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_operator_start(log_path)
    except BaseException:
        stop_operator(process)
        raise
    return process, log_path


def stop_operator(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(15)


def run_operator(
    cluster: LocalCluster,
    count: int,
    timeout: float,
    resync: float | None = None,
    children_only: bool = False,
) -> dict[str, Any]:
    ns = f"bench-op-{count}"
    prepare_namespace(cluster, ns)
    audit = AuditLog(cluster.audit_log_path or Path("/nonexistent"))
    agents = agent_manifests(ns, count)
    # No resync while the agents roll out: the figures to Ready are the event handlers'.
    process, _ = start_operator(cluster, ns, str(count), 3600)
    rss = PeakRss(process.pid)
    rss.start()
    created_in = None
    try:
        start_offset = audit.offset()
        start = time.monotonic()
        if children_only:
            # Eight POSTs at a time: kubectl's one at a time made the creation the
            # bottleneck (about 4 agents/s here). (Agents that exist before the operator
            # starts hit kopf's index pre-population, quadratic in the objects listed.)
            created_in = create_agents(cluster, ns, agents)
        else:
            # One POST per agent (a client-side apply would GET each first: at 1,000
            # agents kubectl alone then takes more than 5 minutes).
            cluster.kubectl(
                "create",
                "-f",
                "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": agents}),
                timeout=300 + count,
            )
        if children_only:
            wait_for_children(cluster, ns, count, timeout, rss)
        else:
            poll_until(cluster, ["-n", ns, "get", "governedagents"], all_ready(count), timeout)
        seconds = time.monotonic() - start
        ready_offset = audit.offset()
        # Trailing events: the last rollouts' status, kopf's bookkeeping; with no pods,
        # every agent's first status, which waits for Ready at most FIRST_STATUS_DELAY.
        time.sleep(FIRST_STATUS_DELAY + 10 if children_only else 5)
        settled_offset = audit.offset()
        until_ready = audit.count(start_offset, ready_offset, OPERATOR_AGENTS)
        trailing = audit.count(ready_offset, settled_offset, OPERATOR_AGENTS)
    finally:
        rss.done.set()
        stop_operator(process)
    figures = {
        "seconds": round(seconds, 1),
        **until_ready.per_agent(count),
        "until": "children" if children_only else "ready",
        "agents_created_in_seconds": created_in,
        "trailing_writes_per_agent": trailing.per_agent(count)["writes_per_agent"],
        "settled_writes_by_kind": trailing.per_agent(count)["writes_by_kind"],
        "trailing_reads_per_agent": trailing.per_agent(count)["reads_per_agent"],
        "peak_rss_mib": round(rss.peak / 2**20, 1),
        "settled_rss_mib": round(rss.last / 2**20, 1),
    }
    if resync is not None:
        restart, resync_pass = measure_restart(cluster, ns, count, resync)
        figures["restart"] = restart.per_agent(count)
        figures["resync_writes_per_agent"] = resync_pass.per_agent(count)["writes_per_agent"]
        figures["resync_reads_per_agent"] = resync_pass.per_agent(count)["reads_per_agent"]
    return figures


def create_agents(cluster: LocalCluster, ns: str, agents: list[dict[str, Any]]) -> float:
    """POST the agents, eight at a time (kubectl's one at a time takes minutes per 1,000);
    the seconds it took."""
    reset_shared_client()
    client = shared_client(ClientSettings(kubeconfig=str(cluster.kubeconfig)))
    client.user_agent = "promethios-bench-create"
    api = kubernetes.client.CustomObjectsApi(client)
    created = 0

    def create(body: dict[str, Any]) -> None:
        api.create_namespaced_custom_object(
            "governance.promethios.ai", "v1alpha1", ns, "governedagents", body
        )

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(create, agents):
            created += 1
            if created % 1000 == 0:
                print(f"  {ns}: {created}/{len(agents)} agents created", flush=True)
    seconds = time.monotonic() - started
    print(f"  {ns}: {created} agents created in {seconds:.0f} s", flush=True)
    reset_shared_client()
    return round(seconds, 1)


def run_floor(
    cluster: LocalCluster, count: int, timeout: float, children_only: bool = False
) -> dict[str, Any]:
    """The same children, written directly by a bare client: the least the work costs."""
    ns = f"bench-floor-{count}"
    prepare_namespace(cluster, ns)
    audit = AuditLog(cluster.audit_log_path or Path("/nonexistent"))
    reset_shared_client()
    client = shared_client(ClientSettings(kubeconfig=str(cluster.kubeconfig)))
    client.user_agent = FLOOR_AGENT
    settings = BuildSettings()
    spec = GovernedAgentSpec.model_validate(SPEC)
    start_offset = audit.offset()
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
        if (i + 1) % 1000 == 0:
            print(f"  {ns}: {i + 1}/{count} agents' children applied", flush=True)
    if not children_only:
        poll_until(cluster, ["-n", ns, "get", "deployments"], deployments_ready(count), timeout)
    seconds = time.monotonic() - start
    requests = audit.count(start_offset, audit.offset(), (FLOOR_AGENT,))
    reset_shared_client()
    return {"seconds": round(seconds, 1), **requests.per_agent(count)}


def fresh_cluster(pods: int, controllers: str = "*") -> LocalCluster:
    """A new control plane with enough kwok nodes for ``pods`` pods, and the CRDs."""
    nodes = max(2, math.ceil(pods / PODS_PER_NODE) + 1)
    cluster = LocalCluster(
        nodes=nodes, audit_log=True, startup_timeout=300, controllers=controllers
    ).start()
    try:
        install_crds(cluster, sorted((ROOT / "crds").glob("*.yaml")), "promethios-bench")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def timeout_for(count: int) -> float:
    return 300 + 1.5 * count


def measure(count: int, resync: float | None, children_only: bool = False) -> dict[str, Any]:
    # --children: no Deployment or ReplicaSet controller, no pods: the objects alone are
    # measured. Else the operator's pods stay during the floor run: room for both.
    cluster = fresh_cluster(0, NO_PODS) if children_only else fresh_cluster(2 * count)
    try:
        print(f"{count} agents: operator run", flush=True)
        op = run_operator(cluster, count, timeout_for(count), resync, children_only)
        print(f"{count} agents: operator {op['seconds']} s; floor run", flush=True)
        floor = run_floor(cluster, count, timeout_for(count), children_only)
    finally:
        cluster.stop()
    return {
        "agents": count,
        "until": "children" if children_only else "ready",
        "operator": op,
        "floor": floor,
        "time_ratio": round(op["seconds"] / floor["seconds"], 2),
    }


def measure_rss(count: int, resync: float) -> dict[str, Any]:
    cluster = fresh_cluster(count)
    try:
        return {"agents": count, "operator": run_operator(cluster, count, timeout_for(count))}
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- report


def resync_figures(op: dict[str, Any]) -> str:
    if "resync_writes_per_agent" not in op:
        return "-"
    return f"{op['resync_writes_per_agent']:.2f},{op['resync_reads_per_agent']:.2f}"


def table(results: dict[str, Any]) -> str:
    header = (
        f"{'agents':>7} {'op s':>7} {'floor s':>8} {'ratio':>6} {'op w/ag':>8} "
        f"{'op r/ag':>8} {'floor w/ag':>11} {'peak RSS MiB':>13} {'resync w,r/ag':>14}"
    )
    lines = [header]
    for run in results["runs"]:
        op, floor = run["operator"], run["floor"]
        lines.append(
            f"{run['agents']:>7} {op['seconds']:>7.1f} {floor['seconds']:>8.1f} "
            f"{run['time_ratio']:>6.2f} {op['writes_per_agent']:>8.2f} "
            f"{op['reads_per_agent']:>8.2f} {floor['writes_per_agent']:>11.2f} "
            f"{op['peak_rss_mib']:>13.1f} {resync_figures(op):>14}"
        )
    for run in results["rss_runs"]:
        op = run["operator"]
        lines.append(
            f"{run['agents']:>7} {op['seconds']:>7.1f} {'-':>8} {'-':>6} "
            f"{op['writes_per_agent']:>8.2f} {op['reads_per_agent']:>8.2f} {'-':>11} "
            f"{op['peak_rss_mib']:>13.1f}  (settled {op['settled_rss_mib']:.1f})"
        )
    for run in results["runs"]:
        if "restart" in run["operator"]:
            restart = run["operator"]["restart"]
            lines.append(
                f"{run['agents']} agents, restarted operator until its first resync: "
                f"writes/agent {restart['writes_per_agent']}, reads/agent "
                f"{restart['reads_per_agent']} ({', '.join(restart['reads_by_kind'])})"
            )
    for run in results["runs"] + results["rss_runs"]:
        writes = ", ".join(f"{k} {v}" for k, v in run["operator"]["writes_by_kind"].items())
        reads = ", ".join(f"{k} {v}" for k, v in run["operator"]["reads_by_kind"].items())
        lines.append(f"{run['agents']} agents, operator writes/agent: {writes}")
        lines.append(f"{run['agents']} agents, operator reads/agent:  {reads}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, action="append", help="agent count (repeatable)")
    parser.add_argument(
        "--rss-agents", type=int, action="append", default=[], help="operator-only RSS run"
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=30.0,
        help="the restarted operator's resync interval (its first whole pass is measured)",
    )
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="skip the restarted operator's resync measurement (long at 10,000 agents)",
    )
    parser.add_argument(
        "--children",
        action="store_true",
        help="measure until every agent's children are applied (no pods; for 10,000 agents)",
    )
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_operator.py", *sys.argv[1:]]),
        "runs": [],
        "rss_runs": [],
        "targets": TARGETS,
        "cpus": os.cpu_count(),
    }
    plan = [("runs", count, measure) for count in args.agents or [100]]
    plan += [("rss_runs", count, measure_rss) for count in args.rss_agents]
    for key, count, run in plan:
        if key == "runs":
            resync = None if args.no_restart else args.resync_seconds
            results[key].append(measure(count, resync, args.children))
        else:
            results[key].append(run(count, args.resync_seconds))
        print(json.dumps(results[key][-1]), flush=True)  # progress: one run at a time
        if args.json:  # written after every run, so a later failure keeps the earlier ones
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    if args.json:
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
