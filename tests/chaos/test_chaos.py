"""Chaos: a fleet of governed agents keeps every violation through crashes and an outage.

N GovernedAgents on kwok pods, each with a real sidecar process on this machine; the
agents call their sidecars, every other call a blocked one (a violation the sidecar
spools, then reports). Meanwhile the operator (with its in-process ingest API) is
SIGKILLed and restarted on a schedule, kube-apiserver and etcd are SIGKILLed and
restarted, and the ingest is unreachable for a window during which pods are deleted and
their sidecars replaced (see :mod:`chaos_plan`, :mod:`chaos_run`). After the last fault,
counted end to end per agent: the status records exactly the violations the sidecars
were caused to report (0 lost, 0 counted twice), and every agent converged within 60 s.

The cluster is the test's own (its API server and etcd get killed); everything runs on
loopback and is stopped when the test ends. ``PROMETHIOS_CHAOS=full`` (``make chaos``)
runs the issue's full plan; the default short plan runs in ``make test``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_checks import converge, figures, recount, table
from chaos_plan import plan_from_env
from chaos_run import ChaosRun, poll

from promethios_local.localcluster import LocalCluster, install_crds

PLAN = plan_from_env()
CRDS = sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))

pytestmark = pytest.mark.timeout(PLAN.timeout)


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ChaosRun]:
    """A control plane of the test's own with the CRDs, and the run (closed afterwards)."""
    cluster = LocalCluster(nodes=2, startup_timeout=300).start()
    try:
        install_crds(cluster, CRDS)
        run = ChaosRun(cluster, PLAN, tmp_path)
        try:
            yield run
        finally:
            run.close()
    finally:
        cluster.stop()


def test_no_violation_is_lost_or_counted_twice_and_every_agent_converges(
    chaos: ChaosRun,
) -> None:
    began = time.monotonic()
    chaos.setup()
    set_up = time.monotonic() - began
    chaos.play()
    outcomes = converge(chaos)

    # The replaced pods' sidecars delivered their spools while draining, then exited.
    old = [instance for rig in chaos.rigs for instance in rig.sidecars[:-1]]
    poll(lambda: all(not i.process.running() for i in old), "the old sidecars to exit", 30)
    summaries = [i.summary() or {} for i in old]
    # Nothing can add to the counts now (a violation leaves a spool only once recorded):
    # a late duplicate would show in a second reading, two heartbeats later.
    poll(lambda: time.monotonic() > chaos.ended + max(o.converged_after or 0 for o in
         outcomes.values()) + 2 * PLAN.heartbeat_seconds, "two more heartbeats", 60)  # fmt: skip
    recount(chaos, outcomes)

    values = {**figures(chaos, outcomes), "set-up s": round(set_up, 1)}
    values["total s"] = round(time.monotonic() - began, 1)
    (chaos.workdir / "chaos-figures.json").write_text(json.dumps(values, indent=2))
    faults = "\n".join(f"  {f.at:7.1f} s  {f.kind:<14} {f.seconds:5.1f} s" for f in chaos.faults)
    print(f"\nchaos ({PLAN.name}) figures:\n{table(values)}\nfaults:\n{faults}")

    unexpected = [f"{rig.name}: {u}" for rig in chaos.rigs for u in rig.unexpected]
    assert not unexpected, unexpected[:20]
    late = {o.name: o.problems for o in outcomes.values() if o.converged_after is None}
    assert not late, (
        f"{len(late)} agents not converged {PLAN.converge_seconds + 30:.0f} s after the last "
        f"fault: {dict(list(late.items())[:10])}\n{chaos.diagnosis()}"
    )
    slow = {
        o.name: round(o.converged_after or 0, 1)
        for o in outcomes.values()
        if (o.converged_after or 0) > PLAN.converge_seconds
    }
    assert not slow, f"converged later than {PLAN.converge_seconds:.0f} s: {slow}"
    miscounted = {o.name: (o.caused, o.recorded) for o in outcomes.values()}
    miscounted = {name: pair for name, pair in miscounted.items() if pair[0] != pair[1]}
    assert not miscounted, f"(caused, recorded) differ: {miscounted}"
    assert values["violations caused"] > 0 and values["pods replaced"] == PLAN.replaced_pods
    assert [i.process.exit_code() for i in old] == [0] * len(old)
    assert [s.get("undeliveredViolations") for s in summaries] == [0] * len(old), summaries
    chaos.cluster.check_running()  # every component survived (or was restarted)
