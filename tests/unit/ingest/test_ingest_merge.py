"""Several ingest replicas on one agent: the stored status is the source of truth.

Pure merge (:func:`promethios.ingest.aggregate.rebase`, :func:`.enforcement.merge`), the
replay markers, and two :class:`IngestService` replicas sharing a resourceVersioned fake
API server (409 on a stale write, re-read, merge again).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import replace
from typing import Any

import pytest
from ingest_fakes import AGENT, IDENTITY, KEY, Clock, FakeApiServer, agent_config
from test_ingest_pure import heartbeat, violation

from promethios.api.enforcement import EnforcementAction
from promethios.api.wire import PolicyViolation
from promethios.ingest import enforcement as enf
from promethios.ingest.aggregator import Aggregator, violation_key
from promethios.ingest.codec import encode_status
from promethios.ingest.merge import foreign
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings
from promethios.ingest.state import VIOLATION_KEYS, AgentState, StoredAgent, stored_agent

T0 = 1_700_000_000.0
CONFIG = agent_config("ns", "bot", trust_threshold=0.5, on_breach="Suspend")


class Store:
    """A stored status with a resourceVersion (what the API server keeps)."""

    def __init__(self) -> None:
        self.rv = 1
        self.status: dict[str, Any] = {}
        self.acknowledged = 0
        self.written_at: float | None = None

    def observed(self) -> StoredAgent:
        return StoredAgent(str(self.rv), self.status, self.acknowledged, self.written_at)


def replica(store: Store, now: float = T0) -> tuple[Aggregator, AgentState]:
    agg = Aggregator()
    return agg, agg.upsert_agent(CONFIG, now, stored=store.observed())


def flush(state: AgentState, store: Store, now: float) -> dict[str, Any]:
    """One successful conditional write of ``state`` onto ``store`` (what the writer does)."""
    Aggregator.observe(state, store.observed(), now)
    carried = Aggregator.prepare_write(state, now)
    body = encode_status(state, now)
    store.rv += 1
    store.status = body
    store.written_at = now
    Aggregator.after_write(state, carried, body, store.observed(), now)
    return body


def record(agg: Aggregator, state: AgentState, keys: list[str], severity: str, at: float) -> None:
    for key in keys:
        assert agg.violations(state, [violation(severity, key=key)], None, at).accepted == 1


def totals(status: dict[str, Any]) -> dict[str, int]:
    return dict(status["governance"]["violations"])


# -- markers --------------------------------------------------------------------------------


def test_violation_key_is_base64url_of_sha256_prefix() -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"v-1").digest()[:9]).decode()
    assert violation_key("v-1") == expected
    for vid in ("v-1", "x" * 128, "ünïcode", "srv-00ff", ""):
        assert re.fullmatch(r"[A-Za-z0-9_-]{12}", violation_key(vid))


def test_keys_bounded_newest_first_and_loaded_on_restart() -> None:
    agg = Aggregator()
    state = agg.upsert_agent(CONFIG, T0)
    record(agg, state, [f"v{i}" for i in range(200)], "low", T0)
    keys = encode_status(state, T0)["governance"]["recentViolationKeys"]
    assert len(keys) == VIOLATION_KEYS == 128
    assert keys[0] == violation_key("v199") and keys[-1] == violation_key("v72")
    # a restarted replica knows the 20 newest by id and 128 by marker
    fresh_agg = Aggregator()
    fresh = fresh_agg.upsert_agent(CONFIG, T0 + 5, encode_status(state, T0))
    replay = [violation("low", key=f"v{i}") for i in range(100, 200)]
    outcome = fresh_agg.violations(fresh, replay, None, T0 + 6)
    assert (outcome.accepted, outcome.duplicates) == (0, 100)
    assert fresh_agg.violations(fresh, [violation("low", key="v50")], None, T0 + 7).accepted == 1


# -- pure merge -----------------------------------------------------------------------------


@pytest.mark.parametrize("a_first", [True, False])
def test_two_replicas_merge_to_the_same_totals_in_either_order(a_first: bool) -> None:
    store = Store()
    agg_a, a = replica(store)
    agg_b, b = replica(store)
    record(agg_a, a, ["a1", "a2", "a3"], "low", T0 + 1)
    record(agg_a, a, ["a4"], "high", T0 + 2)
    record(agg_b, b, ["b1", "b2"], "medium", T0 + 3)
    record(agg_b, b, ["b3"], "low", T0 + 4)
    first, second = (a, b) if a_first else (b, a)
    flush(first, store, T0 + 10)
    body = flush(second, store, T0 + 11)
    assert totals(body) == {"low": 4, "medium": 2, "high": 1, "critical": 0, "total": 7}
    ids = [item["id"] for item in body["governance"]["recentViolations"]]
    assert sorted(ids) == ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]
    assert ids[0] == "b3"  # newest first, whoever wrote last
    keys = body["governance"]["recentViolationKeys"]
    assert sorted(keys) == sorted(violation_key(i) for i in ids)
    # trust: every weight taken once (defaults: low .01, medium .05, high .15)
    assert body["governance"]["trustScore"] == pytest.approx(1 - 0.03 - 0.15 - 0.10 - 0.01, 1e-3)
    # the first writer sees the merged status and converges without writing
    Aggregator.observe(first, store.observed(), T0 + 12)
    assert first.counts == second.counts and list(first.recent) == list(second.recent)
    assert first.pending.empty and second.pending.empty


def test_single_replica_never_rebases() -> None:
    store = Store()
    agg, state = replica(store)
    record(agg, state, ["a1"], "high", T0 + 1)
    flush(state, store, T0 + 2)
    assert not foreign(state)
    before = encode_status(state, T0 + 3)
    # the operator writes its own status fields: a new resourceVersion, ingest values unchanged
    store.rv += 1
    store.status = {**store.status, "observedGeneration": 3}
    assert not Aggregator.observe(state, store.observed(), T0 + 3)
    assert encode_status(state, T0 + 3) == before


def test_deltas_cleared_only_after_a_successful_write() -> None:
    store = Store()
    agg, state = replica(store)
    record(agg, state, ["a1", "a2"], "low", T0 + 1)
    carried = Aggregator.prepare_write(state, T0 + 2)
    record(agg, state, ["a3"], "low", T0 + 2)  # arrives while the write is in flight
    Aggregator.after_write(state, None, None, None, T0 + 3)  # failed: nothing settled
    assert state.pending.counts["low"] == 3
    body = encode_status(state, T0 + 3)
    Aggregator.after_write(state, carried, body, None, T0 + 4)  # the 2 it carried settle
    assert state.pending.counts["low"] == 1 and [i.recorded.id for i in state.pending.items] == [
        "a3"
    ]


def test_conflict_rereads_and_merges_again() -> None:
    store = Store()
    agg_a, a = replica(store)
    agg_b, b = replica(store)
    record(agg_a, a, ["a1"], "low", T0 + 1)
    record(agg_b, b, ["b1"], "critical", T0 + 1)
    # both render against rv 1; B's write lands first, so A's precondition fails (409)
    stale = store.observed()
    carried = Aggregator.prepare_write(a, T0 + 2)
    flush(b, store, T0 + 2)
    assert stale.resource_version != str(store.rv)  # A's write would get 409 ...
    Aggregator.after_write(a, None, None, None, T0 + 2)  # ... and settles nothing
    del carried
    body = flush(a, store, T0 + 3)  # re-read, merge again, write
    assert totals(body) == {"low": 1, "medium": 0, "high": 0, "critical": 1, "total": 2}
    assert body["enforcement"]["action"] == "Suspended" and body["enforcement"]["breach"] == 1
    conditions = {c["type"]: c for c in body["conditions"]}
    assert conditions["PolicyCompliant"]["reason"] == "CriticalViolation"


def test_duplicates_across_replicas_by_id_and_marker_not_recounted() -> None:
    store = Store()
    agg_a, a = replica(store)
    agg_b, b = replica(store)
    record(agg_a, a, ["d1", "d2"], "high", T0 + 1)
    flush(a, store, T0 + 2)
    # B has not seen A's write yet: it records the replay, the merge takes it out again
    record(agg_b, b, ["d1"], "high", T0 + 3)
    body = flush(b, store, T0 + 4)
    assert totals(body)["total"] == 2
    assert [i["id"] for i in body["governance"]["recentViolations"]].count("d1") == 1
    assert body["governance"]["trustScore"] == pytest.approx(0.7, abs=1e-3)
    # once B has seen the stored status, a replay is a duplicate up front
    assert agg_b.violations(b, [violation("high", key="d2")], None, T0 + 5).duplicates == 1
    # marker only: an id long gone from recentViolations is still known by its marker
    marked = Store()
    marked.status = {
        "governance": {
            "violations": {"low": 1, "total": 1},
            "recentViolations": [],
            "recentViolationKeys": [violation_key("old-1")],
        }
    }
    agg_c, c = replica(marked)
    assert agg_c.violations(c, [violation("low", key="old-1")], None, T0).duplicates == 1
    record(agg_c, c, ["new-1"], "low", T0 + 1)
    marked.status["governance"]["recentViolationKeys"].append(violation_key("new-1"))
    marked.rv += 1
    Aggregator.observe(c, marked.observed(), T0 + 2)  # another replica stored new-1 too
    assert totals(flush(c, marked, T0 + 3))["total"] == 1


def test_escalation_is_monotonic_and_released_only_by_acknowledgement() -> None:
    none = enf.EnforcementState()
    suspended = enf.EnforcementState(EnforcementAction.SUSPENDED, 1, "critical", T0, 1)
    quarantined = enf.EnforcementState(EnforcementAction.QUARANTINED, 1, "critical", T0, 1)
    second = enf.EnforcementState(EnforcementAction.NONE, 2, "trust", T0)
    assert enf.merge(none, suspended, 0) == suspended  # never cleared by a stale replica
    assert enf.merge(suspended, none, 0) == suspended
    assert enf.merge(suspended, quarantined, 0) == quarantined
    assert enf.merge(quarantined, suspended, 0) == quarantined
    # the higher breach number wins; the critical breach is never forgotten by the merge
    assert enf.merge(suspended, second, 0) == replace(second, critical_breach=1)
    stored = enf.EnforcementState(EnforcementAction.NONE, 1, "critical", None, 1)
    released = enf.merge(suspended, stored, 1)
    assert (released.action, released.breach, released.critical_breach) == ("None", 1, 1)
    # through the merge: a replica that missed the breach keeps it; the acknowledgement
    # (read from the stored object's spec) releases it
    store = Store()
    agg_a, a = replica(store)
    agg_b, b = replica(store)
    record(agg_a, a, ["c1"], "critical", T0 + 1)
    flush(a, store, T0 + 2)
    record(agg_b, b, ["l1"], "low", T0 + 3)
    body = flush(b, store, T0 + 4)
    assert (body["enforcement"]["action"], body["enforcement"]["breach"]) == ("Suspended", 1)
    store.acknowledged = 1
    store.rv += 1
    record(agg_a, a, ["l2"], "low", T0 + 5)
    body = flush(a, store, T0 + 6)
    assert (body["enforcement"]["action"], body["enforcement"]["breach"]) == ("None", 1)


def test_heartbeat_newer_wins_and_trust_recovers_from_the_write_time() -> None:
    store = Store()
    agg_a, a = replica(store)
    agg_b, b = replica(store)
    agg_a.heartbeat(a, heartbeat("active"), None, T0 + 10)
    agg_b.heartbeat(b, heartbeat("error"), None, T0 + 20)
    record(agg_b, b, ["h1", "h2"], "high", T0 + 20)  # trust 0.7 at T0+20
    flush(b, store, T0 + 20)
    body = flush(a, store, T0 + 20 + 3600)  # an hour later: recovered 0.05
    assert body["heartbeat"]["state"] == "error"  # B's heartbeat is the newer one
    assert body["governance"]["trustScore"] == pytest.approx(0.75, abs=1e-3)


# -- two services on one fake API server ------------------------------------------------------


def service(server: FakeApiServer, clock: Clock, watch: bool) -> IngestService:
    settings = IngestSettings(status_write_timeout_seconds=5.0)
    svc = IngestService(settings, server.sink(), clock=clock)
    svc.keystore.add_key(KEY, AGENT, IDENTITY)
    config = agent_config("team-a", "support-bot")
    svc.upsert_agent(config, stored=stored_agent(server.objects[AGENT]))
    if watch:
        server.watch(svc, config)
    return svc


@pytest.mark.parametrize("watch", [True, False])
async def test_two_services_count_every_violation_once(watch: bool) -> None:
    clock = Clock()
    server = FakeApiServer(clock, delay=0.002)
    server.add("team-a", "support-bot")
    replicas = [service(server, clock, watch), service(server, clock, watch)]

    async def send(i: int, other: int = 0) -> None:
        svc = replicas[(i + other) % 2]
        state = svc.agent(AGENT)
        assert state is not None
        severity = ("low", "medium", "high", "critical")[i % 4]
        item = PolicyViolation.model_validate(
            {"type": "pii", "severity": severity, "description": "d", "idempotencyKey": f"k{i}"}
        )
        await svc.violations(state, [item], None)

    await asyncio.gather(*(send(i) for i in range(40)))
    assert server.conflicts > 0  # the replicas raced and re-merged
    status = server.status(AGENT)
    assert totals(status) == {"low": 10, "medium": 10, "high": 10, "critical": 10, "total": 40}
    ids = [item["id"] for item in status["governance"]["recentViolations"]]
    assert len(ids) == len(set(ids)) == 20
    # every key replayed to the other replica: still 40
    await asyncio.gather(*(send(i, other=1) for i in range(40)))
    assert server.status(AGENT)["governance"]["violations"]["total"] == 40
    for svc in replicas:
        await svc.stop()
