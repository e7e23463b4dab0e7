"""After the last fault: each agent's status against the ground truth, and convergence.

An agent has converged when everything about it is as it should be at once: its status
counts exactly the violations its sidecars were caused to report (none lost, none twice),
it is Ready for its current generation, ``HeartbeatFresh``, the ingest heard a heartbeat
after the last fault (its heartbeat-age metric), its children are in place, a replaced pod
is really gone, and every spool of its sidecars (the old pod's too) is empty. The time
from the end of the last fault until then is its convergence time.
"""

from __future__ import annotations

import re
import statistics
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from chaos_fleet import AgentRig
from chaos_run import ChaosRun, condition

HEARTBEAT_AGE = re.compile(r"^promethios_agent_heartbeat_age_seconds\{(.*)\} (\S+)$", re.M)
NAME_LABEL = re.compile(r'(?:^|,)name="([^"]*)"')
#: How long past the deadline to keep looking, so a late agent's time is still measured.
OVERTIME = 30.0


@dataclass
class AgentOutcome:
    """One agent after the run."""

    name: str
    caused: int
    recorded: int | None = None
    converged_after: float | None = None
    problems: list[str] = field(default_factory=list)
    #: What was still wrong at the look before it converged (why it took that long).
    waited_for: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    """One look: agents by name, children as (kind, name), pod uids by agent, and the
    ingest's heartbeat age by agent (its ``/metrics``) when it was read (monotonic)."""

    agents: dict[str, dict[str, Any]]
    children: set[tuple[str, str]]
    pods: dict[str, set[str]]
    heartbeat_age: dict[str, float]
    taken: float

    @classmethod
    def take(cls, run: ChaosRun) -> Snapshot:
        taken, ages = time.monotonic(), heartbeat_ages(run)
        agents = {a["metadata"]["name"]: a for a in run.items("ga")}
        children, pods = set(), {}
        for obj in run.items("deploy,svc,cm,secret,pods"):
            meta = obj["metadata"]
            if obj["kind"] == "Pod":
                agent = (meta.get("labels") or {}).get("promethios.ai/agent", "")
                pods.setdefault(agent, set()).add(meta["uid"])
            else:
                children.add((obj["kind"], meta["name"]))
        return cls(agents, children, pods, ages, taken)


def heartbeat_ages(run: ChaosRun) -> dict[str, float]:
    """``promethios_agent_heartbeat_age_seconds`` by agent, from the running ingest (the
    status holds ``lastHeartbeat`` only every couple of minutes, by design); {} if down."""
    url = f"http://127.0.0.1:{run.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    ages = {}
    for sample in HEARTBEAT_AGE.finditer(text):
        if name := NAME_LABEL.search(sample[1]):
            ages[name[1]] = float(sample[2])
    return ages


def violations_recorded(agent: dict[str, Any]) -> int | None:
    governance = (agent.get("status") or {}).get("governance") or {}
    total = (governance.get("violations") or {}).get("total")
    return int(total) if total is not None else None


def problems(run: ChaosRun, rig: AgentRig, look: Snapshot) -> tuple[int | None, list[str]]:
    """(violations recorded, what is still wrong) for one agent."""
    agent = look.agents.get(rig.name)
    if agent is None:
        return None, ["the GovernedAgent is gone"]
    found, status = [], agent.get("status") or {}
    recorded = violations_recorded(agent)
    if recorded != rig.violations_caused:
        found.append(f"violations {recorded} != {rig.violations_caused} caused")
    if status.get("observedGeneration") != agent["metadata"]["generation"]:
        found.append("observedGeneration behind")
    if condition(agent, "Ready") != "True":
        found.append("not Ready")
    if condition(agent, "HeartbeatFresh") != "True":
        found.append("heartbeat not fresh")
    age = look.heartbeat_age.get(rig.name)
    if age is None or look.taken - age < run.ended:
        found.append("no heartbeat since the last fault")
    wanted = {("Deployment", rig.name), ("Service", rig.name)}
    wanted |= {("ConfigMap", f"{rig.name}-governance"), ("Secret", f"{rig.name}-api-key")}
    found += [f"{kind} {name} missing" for kind, name in sorted(wanted - look.children)]
    pods = look.pods.get(rig.name, set())
    if not pods:
        found.append("no pod")
    if rig.name in run.replaced and run.replaced[rig.name] in pods:
        found.append("the replaced pod is still there")
    spooled = sum(instance.spooled() for instance in rig.sidecars)
    if spooled:
        found.append(f"{spooled} violations still spooled")
    return recorded, found


def converge(run: ChaosRun) -> dict[str, AgentOutcome]:
    """Look about once a second until every agent converged (or the deadline passed)."""
    outcomes = {rig.name: AgentOutcome(rig.name, rig.violations_caused) for rig in run.rigs}
    deadline = run.ended + run.plan.converge_seconds + OVERTIME
    waiting = list(run.rigs)
    while waiting:
        look = Snapshot.take(run)
        now = time.monotonic()
        for rig in list(waiting):
            outcome = outcomes[rig.name]
            outcome.recorded, outcome.problems = problems(run, rig, look)
            outcome.waited_for = outcome.problems or outcome.waited_for
            if not outcome.problems:
                outcome.converged_after = now - run.ended
                waiting.remove(rig)
        if now > deadline:
            break
        time.sleep(1.0)
    return outcomes


def recount(run: ChaosRun, outcomes: dict[str, AgentOutcome]) -> None:
    """Read the counts once more (later): a duplicate that arrived after convergence shows."""
    look = Snapshot.take(run)
    for name, outcome in outcomes.items():
        outcome.recorded = violations_recorded(look.agents.get(name, {}))


def figures(run: ChaosRun, outcomes: dict[str, AgentOutcome]) -> dict[str, Any]:
    """The run's figures: what was caused, recorded, lost, duplicated; convergence."""
    caused = sum(o.caused for o in outcomes.values())
    recorded = sum(o.recorded or 0 for o in outcomes.values())
    times = sorted(o.converged_after for o in outcomes.values() if o.converged_after is not None)
    kinds = [f.kind for f in run.faults]
    converged = [o for o in outcomes.values() if o.converged_after is not None]
    slowest = max(converged, key=lambda o: o.converged_after or 0.0, default=None)
    return {
        "plan": run.plan.name,
        "agents": len(outcomes),
        "sidecar processes": sum(len(rig.sidecars) for rig in run.rigs),
        "clean calls": sum(rig.clean_calls for rig in run.rigs),
        "violations caused": caused,
        "violations recorded": recorded,
        "lost": sum(max(0, o.caused - (o.recorded or 0)) for o in outcomes.values()),
        "counted twice": sum(max(0, (o.recorded or 0) - o.caused) for o in outcomes.values()),
        "ambiguous calls": sum(rig.ambiguous for rig in run.rigs),
        "operator SIGKILLs": kinds.count("operator-kill"),
        "apiserver restarts": kinds.count("apiserver"),
        "etcd restarts": kinds.count("etcd"),
        "ingest outage s": run.plan.outage_seconds,
        "pods replaced": len(run.replaced),
        "converged": f"{len(times)}/{len(outcomes)}",
        "convergence p50 s": round(statistics.median(times), 1) if times else None,
        "convergence max s": round(times[-1], 1) if times else None,
        "the slowest waited for": slowest.waited_for if slowest else None,
    }


def table(values: dict[str, Any]) -> str:
    width = max(len(key) for key in values)
    return "\n".join(f"  {key:<{width}}  {value}" for key, value in values.items())
