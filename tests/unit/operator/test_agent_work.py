"""GovernedAgent events (:mod:`promethios.controller.agentwork`): which events call for a
reconcile, how waiting work coalesces, and how a reconcile's failure is handled."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from promethios.api.agent import InvalidSpec
from promethios.controller import agentwork
from promethios.controller.agentwork import AgentEvents, AgentQueue, AgentWork, carry_out
from promethios.controller.cache import ObjectCache, pack
from promethios.controller.context import RETRY, ReconcileContext
from promethios.controller.observed import Plan
from promethios.kube.apply import ApiException

NS = "team-a"


def agent(
    name: str = "bot",
    uid: str = "u-1",
    generation: int = 1,
    observed: int | None = 1,
    enforcement: dict[str, Any] | None = None,
    critical: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if enforcement is not None:
        status["enforcement"] = enforcement
    if critical is not None:
        spec["rollout"] = {"rollbackOnBreach": True}
        status["governance"] = {"violations": {"critical": critical}}
    metadata = {"namespace": NS, "name": name, "uid": uid, "generation": generation, **extra}
    return {"metadata": metadata, "spec": spec, "status": status}


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- what an event calls for ---------------------------------------------------------


def test_the_start_up_listing_reconciles_every_agent_and_marks_it_initial() -> None:
    work = AgentEvents().decide(None, agent())
    assert work == AgentWork("u-1", NS, "bot", initial=True)


def test_heartbeats_and_own_status_writes_call_for_nothing() -> None:
    events = AgentEvents()
    events.decide(None, agent())
    assert events.decide("MODIFIED", agent()) is None
    assert events.decide("MODIFIED", agent(enforcement={"action": "None", "breach": 0})) is None


def test_a_spec_change_and_a_new_enforcement_reconcile() -> None:
    events = AgentEvents()
    events.decide(None, agent())
    assert events.decide("MODIFIED", agent(generation=2)) == AgentWork("u-1", NS, "bot")
    suspended = agent(enforcement={"action": "Suspended", "breach": 1})
    assert events.decide("MODIFIED", suspended) == AgentWork("u-1", NS, "bot")
    assert events.decide("MODIFIED", suspended) is None  # the same enforcement again


def test_more_critical_violations_reconcile_only_when_rollback_on_breach_watches_them() -> None:
    events = AgentEvents()
    events.decide(None, agent(critical=1))
    assert events.decide("MODIFIED", agent(critical=1)) is None
    assert events.decide("MODIFIED", agent(critical=2)) == AgentWork("u-1", NS, "bot")
    plain = AgentEvents()
    plain.decide(None, agent())
    body = agent()
    body["status"]["governance"] = {"violations": {"critical": 9}}
    assert plain.decide("MODIFIED", body) is None


def test_a_deletion_forgets_what_was_seen_of_that_uid_only() -> None:
    events = AgentEvents()
    events.decide(None, agent(critical=1, enforcement={"action": "Suspended", "breach": 1}))
    events.decide(None, agent(name="other", uid="u-2"))
    assert events.decide("DELETED", agent()) == AgentWork("u-1", NS, "bot", deleted=True)
    assert set(events.enforcement) == set(events.critical) == {"u-2"}


def test_an_agent_being_deleted_is_not_reconciled() -> None:
    events = AgentEvents()
    events.decide(None, agent())
    going = agent(generation=2, deletionTimestamp="2026-11-30T00:00:00Z")
    assert events.decide("MODIFIED", going) is None


def test_a_waiting_reconcile_is_superseded_but_a_deletion_never_is() -> None:
    reconcile, deletion = AgentWork("u", NS, "a"), AgentWork("u", NS, "a", deleted=True)
    assert agentwork.supersedes(reconcile, AgentWork("u", NS, "a", initial=True))
    assert not agentwork.supersedes(deletion, reconcile)
    assert not agentwork.supersedes(reconcile, deletion)


# --- carrying it out ------------------------------------------------------------------


class Reconciles:
    """Stands in for :func:`reconcile_named`: records calls, answers or raises."""

    def __init__(self, answer: Plan | Exception | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, ctx: Any, namespace: str, name: str, refs: Any = None) -> Plan | None:
        self.calls.append((namespace, name))
        self.release.wait(5)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def ctx() -> ReconcileContext:
    # Scheduled reconciles are only recorded: their timers are never started.
    return ReconcileContext(client=None, start_timer=lambda delay, fire: threading.Timer(0, fire))


def use(monkeypatch: pytest.MonkeyPatch, reconciles: Reconciles) -> Reconciles:
    monkeypatch.setattr(agentwork, "reconcile_named", reconciles)
    return reconciles


def test_a_failed_reconcile_is_retried_later(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, Reconciles(RuntimeError("api down")))
    carry_out(ctx, AgentWork("u-1", NS, "bot"))
    assert ctx.scheduled("u-1", RETRY) is not None


def test_an_invalid_spec_is_logged_and_not_retried(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use(monkeypatch, Reconciles(InvalidSpec("spec.model: required")))
    with caplog.at_level(logging.ERROR):
        carry_out(ctx, AgentWork("u-1", NS, "bot"))
    assert f"{NS}/bot: invalid spec: spec.model: required" in caplog.text
    assert ctx.scheduled("u-1", RETRY) is None


def test_a_terminating_namespace_is_not_retried(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = ApiException(status=403)
    refused.body = '{"reason":"Forbidden","details":{"causes":[{"type":"NamespaceTerminating"}]}}'
    use(monkeypatch, Reconciles(refused))
    carry_out(ctx, AgentWork("u-1", NS, "bot"))
    assert ctx.scheduled("u-1", RETRY) is None


def test_an_agent_in_sync_at_start_up_is_logged_once(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use(monkeypatch, Reconciles(Plan()))
    with caplog.at_level(logging.INFO):
        carry_out(ctx, AgentWork("u-1", NS, "bot", initial=True))
        carry_out(ctx, AgentWork("u-1", NS, "bot"))
    assert caplog.text.count("in sync at start-up; nothing written") == 1


def test_a_deletion_drops_the_agents_scheduled_retry(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconciles = use(monkeypatch, Reconciles())
    ctx.retry_later("u-1", NS, "bot")
    carry_out(ctx, AgentWork("u-1", NS, "bot", deleted=True))
    assert ctx.scheduled("u-1", RETRY) is None
    assert reconciles.calls == []


# --- the queue ------------------------------------------------------------------------


def test_nothing_runs_before_the_cache_answers_then_one_reconcile_per_burst(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconciles = use(monkeypatch, Reconciles())
    gate = threading.Event()
    queue = AgentQueue(ctx, workers=2)
    queue.start(gate)
    try:
        queue.on_event(None, agent())
        for generation in (2, 3, 4):
            queue.on_event("MODIFIED", agent(generation=generation))
        queue.on_event(None, agent(name="other", uid="u-2"))
        time.sleep(0.2)
        assert reconciles.calls == []
        gate.set()
        wait_until(queue.idle)
        assert sorted(reconciles.calls) == [(NS, "bot"), (NS, "other")]
    finally:
        queue.stop()


def test_a_deletion_runs_after_the_reconcile_before_it_and_before_a_re_creation(
    ctx: ReconcileContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconciles = use(monkeypatch, Reconciles())
    reconciles.release.clear()
    forgotten: list[str] = []
    real_forget = ctx.forget

    def forget(uid: str, namespace: str = "", name: str = "") -> None:
        forgotten.append(uid)
        real_forget(uid, namespace, name)

    monkeypatch.setattr(ctx, "forget", forget)
    gate = threading.Event()
    gate.set()
    queue = AgentQueue(ctx, workers=2)
    queue.start(gate)
    try:
        queue.on_event(None, agent())
        wait_until(lambda: len(reconciles.calls) == 1)  # running, held
        queue.on_event("DELETED", agent())
        queue.on_event("ADDED", agent(uid="u-2", observed=None))
        assert forgotten == []  # not while the agent's reconcile runs
        reconciles.release.set()
        wait_until(queue.idle)
        assert forgotten == ["u-1"]
        assert reconciles.calls == [(NS, "bot"), (NS, "bot")]
    finally:
        queue.stop()


def test_an_event_before_the_workers_start_is_an_error_not_a_silent_loss(
    ctx: ReconcileContext,
) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        AgentQueue(ctx).on_event(None, agent())


def test_a_deleted_agent_is_gone_from_the_cache_though_its_status_was_just_written(
    ctx: ReconcileContext,
) -> None:
    index: dict[tuple[str, str, str], bytes] = {}
    cache = ObjectCache(lambda *key: index.get(key), lambda _: iter([]))
    cache.mark_ready()
    ctx.cache = cache
    written = agent()
    written["metadata"]["resourceVersion"] = "7"
    index[("GovernedAgent", NS, "bot")] = pack(written)
    cache.wrote(
        "GovernedAgent", {**written, "metadata": {**written["metadata"], "resourceVersion": "8"}}
    )
    del index[("GovernedAgent", NS, "bot")]  # the watch saw the deletion
    assert cache.get("GovernedAgent", NS, "bot") is not None  # the own write still answers
    queue = AgentQueue(ctx, workers=1)
    queue.start(threading.Event())  # closed gate: nothing runs
    try:
        queue.on_event("DELETED", written)
    finally:
        queue.stop()
    assert cache.get("GovernedAgent", NS, "bot") is None
    recreated = agent(uid="u-2")
    recreated["metadata"]["resourceVersion"] = "20"
    index[("GovernedAgent", NS, "bot")] = pack(recreated)
    assert cache.get("GovernedAgent", NS, "bot")["metadata"]["uid"] == "u-2"
