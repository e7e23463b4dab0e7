"""The chaos run's shape: how many agents, how fast they misbehave, and when each fault strikes.

Two plans: ``short`` (the default; it runs in ``make test`` on CI's 2 cores in about
2-3 minutes) and ``full`` (``make chaos``: the issue's 100 agents, an operator SIGKILL
every 30 s, API server and etcd restarts, a 5-minute ingest outage while pods are
replaced). ``PROMETHIOS_CHAOS=full`` selects the full plan.

Times are seconds from the start of the fault phase. The agents call their sidecars for
the whole phase and stop when it ends: from then on the ground truth is fixed, and every
agent must converge within :attr:`ChaosPlan.converge_seconds`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "PROMETHIOS_CHAOS"


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: ``kind`` at ``at`` seconds into the phase."""

    at: float
    kind: str  # operator-kill | apiserver | etcd | outage-start | replace-pods | outage-end


@dataclass(frozen=True)
class ChaosPlan:
    """Fleet size, traffic and the fault schedule of one chaos run."""

    name: str
    agents: int
    seconds: float
    #: Seconds between one agent's model calls; every other call is blocked (a violation).
    call_interval: float
    heartbeat_seconds: int
    operator_kill_every: float
    apiserver_restarts: tuple[float, ...]
    etcd_restarts: tuple[float, ...]
    outage_start: float
    outage_seconds: float
    #: How many agents get their pod replaced (and a new sidecar) during the outage.
    replaced_pods: int
    converge_seconds: float = 60.0

    @property
    def drain_seconds(self) -> int:
        """The agents' ``spec.sidecar.drainSeconds``: a replaced pod's sidecar outlasts
        the outage (as its pod's grace period would let it) and delivers its spool."""
        return int(min(600, self.outage_seconds + 60))

    def faults(self) -> list[Fault]:
        """Every fault, in time order."""
        kills = int(self.seconds // self.operator_kill_every)
        faults = [Fault(self.operator_kill_every * (i + 1), "operator-kill") for i in range(kills)]
        faults += [Fault(at, "apiserver") for at in self.apiserver_restarts]
        faults += [Fault(at, "etcd") for at in self.etcd_restarts]
        faults += [
            Fault(self.outage_start, "outage-start"),
            Fault(self.outage_start + min(5.0, self.outage_seconds / 4), "replace-pods"),
            Fault(self.outage_start + self.outage_seconds, "outage-end"),
        ]
        return sorted((f for f in faults if f.at <= self.seconds), key=lambda f: f.at)

    @property
    def timeout(self) -> float:
        """A generous bound on the whole test (set-up, phase, convergence, tear-down)."""
        return 300 + self.agents * 4 + self.seconds + 2 * self.converge_seconds


SHORT = ChaosPlan(
    name="short",
    agents=12,
    seconds=72,
    call_interval=1.0,
    heartbeat_seconds=2,
    operator_kill_every=12,
    apiserver_restarts=(15,),
    etcd_restarts=(30,),
    outage_start=40,
    outage_seconds=25,
    replaced_pods=6,
)

FULL = ChaosPlan(
    name="full",
    agents=100,
    seconds=480,
    call_interval=8.0,
    heartbeat_seconds=5,
    operator_kill_every=30,
    apiserver_restarts=(45, 440),
    etcd_restarts=(75, 460),
    outage_start=120,
    outage_seconds=300,
    replaced_pods=50,
)


def plan_from_env() -> ChaosPlan:
    """``full`` if ``$PROMETHIOS_CHAOS`` says so, else ``short``; anything else is an error."""
    chosen = os.environ.get(ENV, "short").strip().lower() or "short"
    plans = {"short": SHORT, "full": FULL}
    if chosen not in plans:
        raise ValueError(f"{ENV}={chosen!r}: must be one of {sorted(plans)}")
    return plans[chosen]
