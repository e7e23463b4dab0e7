"""Which agent watch events reconcile, which status writes may wait, and the timers
(retry with backoff, coalesced rollout progress) of the shared context."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from promethios.api.policy import GovernancePolicySpec
from promethios.builders import BuildSettings
from promethios.controller.context import EXPIRY, PROGRESS, RETRY, ReconcileContext, backoff
from promethios.controller.observed import Observed, Plan
from promethios.controller.plan import plan_agent, progress_only
from promethios.controller.triggers import needs_reconcile, policy_spec_changed

UID = "uid-1"


def agent_body(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "bot", "uid": UID, "generation": generation}, "status": status}


def test_new_agents_and_spec_changes_reconcile() -> None:
    assert needs_reconcile(None, agent_body(observedGeneration=1), None)  # initial listing
    assert needs_reconcile("ADDED", agent_body(), None)  # no status yet
    assert needs_reconcile("MODIFIED", agent_body(2, observedGeneration=1), ("None", 0))


def test_status_writes_alone_are_no_ops() -> None:
    # A heartbeat of the ingest API, or the operator's own status write.
    body = agent_body(2, observedGeneration=2, heartbeat={"lastSeen": "now"})
    assert not needs_reconcile("MODIFIED", body, ("None", 0))
    assert not needs_reconcile("MODIFIED", body, None)


def test_a_new_enforcement_reconciles() -> None:
    body = agent_body(1, observedGeneration=1, enforcement={"action": "Quarantined", "breach": 1})
    assert needs_reconcile("MODIFIED", body, ("None", 0))
    assert not needs_reconcile("MODIFIED", body, ("Quarantined", 1))


def test_a_deleting_agent_is_left_to_the_garbage_collector() -> None:
    body = agent_body(2, observedGeneration=1)
    body["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert not needs_reconcile(None, body, None)


def test_pod_counts_alone_may_wait_but_ready_does_not(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    agent, policy, provider = agent_factory(), GovernancePolicySpec(), frozenset({"apiKey"})
    first = plan_agent(Observed(agent, policy, provider), BuildSettings(), now, keys)
    assert first.status is not None and not progress_only(first, {})  # children to create
    live = {m["kind"]: {**m, "metadata": {**m["metadata"], "generation": 1}} for m in first.apply}

    def plan_with(deployment_status: dict[str, Any]) -> Plan:
        children = {**live, "Deployment": {**live["Deployment"], "status": deployment_status}}
        observed = Observed(agent, policy, provider, (), children, first.status or {})
        return plan_agent(observed, BuildSettings(), now + timedelta(seconds=1), keys)

    # The Deployment controller created the pod: counts change, Ready stays False.
    rolling = plan_with({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1})
    assert rolling.status is not None and rolling.apply == []
    assert progress_only(rolling, first.status)
    # The pod is ready: Ready becomes True, written at once.
    ready = plan_with(
        {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
    )
    assert ready.status is not None and not progress_only(ready, first.status)


class FakeTimers:
    """Records started timers instead of running them."""

    def __init__(self) -> None:
        self.started: list[tuple[float, FakeTimer]] = []

    def __call__(self, delay: float, fire: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(fire)
        self.started.append((delay, timer))
        return timer


class FakeTimer:
    def __init__(self, fire: Callable[[], None]) -> None:
        self.fire, self.cancelled = fire, False

    def cancel(self) -> None:
        self.cancelled = True


def context(now: datetime) -> tuple[ReconcileContext, FakeTimers]:
    timers = FakeTimers()
    return ReconcileContext(client=None, clock=lambda: now, start_timer=timers), timers


def test_backoff_doubles_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert backoff(1000) == 300


def test_retries_back_off_and_reset_on_success(now: datetime) -> None:
    ctx, timers = context(now)
    delays = [ctx.retry_later(UID, "team-a", "bot") for _ in range(3)]
    assert delays == [5.0, 10.0, 20.0]
    assert [t.cancelled for _, t in timers.started] == [True, True, False]  # one pending
    assert ctx.scheduled(UID, RETRY) == now + timedelta(seconds=20)
    ctx.succeeded(UID)
    assert ctx.scheduled(UID, RETRY) is None and timers.started[-1][1].cancelled
    assert ctx.retry_later(UID, "team-a", "bot") == 5.0


def test_progress_keeps_the_earlier_time_and_purposes_are_independent(now: datetime) -> None:
    ctx, timers = context(now)
    soon, later = now + timedelta(seconds=5), now + timedelta(seconds=9)
    ctx.reconcile_at(UID, "team-a", "bot", soon, PROGRESS, keep_earlier=True)
    ctx.reconcile_at(UID, "team-a", "bot", later, PROGRESS, keep_earlier=True)
    assert ctx.scheduled(UID, PROGRESS) == soon and len(timers.started) == 1
    ctx.reconcile_at(UID, "team-a", "bot", now + timedelta(days=1))  # a key expiry
    ctx.retry_later(UID, "team-a", "bot")
    assert ctx.scheduled(UID, PROGRESS) == soon
    assert ctx.scheduled(UID, EXPIRY) == now + timedelta(days=1)
    ctx.forget(UID, "team-a", "bot")
    assert all(t.cancelled for _, t in timers.started)
    assert ctx.scheduled(UID, PROGRESS) is None and ctx.scheduled(UID, RETRY) is None


def test_a_replaced_timer_does_not_fire(now: datetime) -> None:
    ctx, timers = context(now)
    ctx.reconcile_at(UID, "team-a", "bot", now + timedelta(seconds=5), RETRY)
    ctx.reconcile_at(UID, "team-a", "bot", now + timedelta(seconds=10), RETRY)
    timers.started[0][1].fire()  # already cancelled: must not reconcile (client is None)
    assert ctx.scheduled(UID, RETRY) == now + timedelta(seconds=10)


def test_policy_status_writes_reconcile_no_agent() -> None:
    """Budget usage is written to a shared budget's policy on every exchange: only a spec
    change (a new metadata.generation) may reconcile the agents using the policy."""
    generations: dict[tuple[str, str], Any] = {}
    key = ("team-a", "policy")
    assert not policy_spec_changed(generations, None, key, 1)  # the initial listing
    assert not policy_spec_changed(generations, "MODIFIED", key, 1)  # status.usage written
    assert policy_spec_changed(generations, "MODIFIED", key, 2)  # the spec changed
    assert not policy_spec_changed(generations, "MODIFIED", key, 2)
    assert policy_spec_changed(generations, "DELETED", key, 2)
    assert policy_spec_changed(generations, "ADDED", key, 1)
    assert policy_spec_changed(generations, "MODIFIED", ("team-a", "new"), 3)  # unknown before
