"""Pure parts of the ingest API: keystore, trust, idempotency, rate limit, enforcement,
flush policy, aggregation, events and alert formatting."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from ingest_fakes import agent_config

from promethios.api.enforcement import BreachAction
from promethios.api.policy import SeverityWeights, TrustScoring
from promethios.api.wire import HeartbeatReport, PolicyViolation
from promethios.ingest import enforcement as enf
from promethios.ingest import events as ev
from promethios.ingest.aggregator import Aggregator, load_status
from promethios.ingest.alertformat import (
    Alert,
    ResolvedSink,
    build_request,
    pagerduty_body,
    sign,
    slack_body,
    verify_signature,
    wanted,
)
from promethios.ingest.alerts import Deduplicator
from promethios.ingest.codec import encode_status
from promethios.ingest.idempotency import IdempotencyCache
from promethios.ingest.keystore import AuthOutcome, KeyStore, entries_from_secret, sha256_hex
from promethios.ingest.ratelimit import RateLimiter, retry_after_header
from promethios.ingest.trust import TrustDebt, trust_after
from promethios.ingest.writer import flush_due

T0 = 1_700_000_000.0


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(current: str, previous: str | None = None, expires: str | None = None) -> dict:
    annotations = {"promethios.ai/governance-identity": "gid-1"}
    data = {"apiKey": b64(current), "apiKeySha256": b64(sha256_hex(current))}
    if previous:
        data["previousApiKeySha256"] = b64(sha256_hex(previous))
    if expires:
        annotations["promethios.ai/previous-key-expires-at"] = expires
    return {
        "metadata": {
            "name": "bot-api-key",
            "namespace": "ns",
            "uid": "u1",
            "labels": {"promethios.ai/agent": "bot"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "governance.promethios.ai/v1alpha1",
                    "kind": "GovernedAgent",
                    "name": "bot",
                    "uid": "uid-bot",
                    "controller": True,
                }
            ],
        },
        "data": data,
    }


# -- keystore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "agent", "identity", "expected"),
    [
        ("Bearer new-key", "ns/bot", "gid-1", AuthOutcome.OK),
        ("Bearer old-key", "ns/bot", "gid-1", AuthOutcome.OK),  # within the grace period
        (None, "ns/bot", "gid-1", AuthOutcome.UNAUTHENTICATED),
        ("Basic new-key", "ns/bot", "gid-1", AuthOutcome.UNAUTHENTICATED),
        ("Bearer ", "ns/bot", "gid-1", AuthOutcome.UNAUTHENTICATED),
        ("Bearer nope", "ns/bot", "gid-1", AuthOutcome.UNAUTHENTICATED),
        ("Bearer new-key", "ns/other", "gid-1", AuthOutcome.FORBIDDEN),
        ("Bearer new-key", None, "gid-1", AuthOutcome.FORBIDDEN),
        ("Bearer new-key", "ns/bot", "gid-2", AuthOutcome.FORBIDDEN),
        ("Bearer new-key", "ns/bot", None, AuthOutcome.FORBIDDEN),
    ],
)
def test_auth_matrix(authorization, agent, identity, expected) -> None:
    store = KeyStore()
    store.put_secret(secret("new-key", "old-key", "2099-01-01T00:00:00Z"))
    assert store.authenticate(authorization, agent, identity, T0).outcome is expected


def test_rotated_out_key_expires() -> None:
    store = KeyStore()
    store.put_secret(secret("new-key", "old-key", "2023-11-14T22:13:20Z"))  # == T0
    assert store.authenticate("Bearer old-key", "ns/bot", "gid-1", T0 - 1).outcome is AuthOutcome.OK
    result = store.authenticate("Bearer old-key", "ns/bot", "gid-1", T0)
    assert result.outcome is AuthOutcome.UNAUTHENTICATED
    assert "old-key" not in result.message


def test_previous_key_without_expiry_is_refused_and_removal_works() -> None:
    store = KeyStore()
    store.put_secret(secret("new-key", "old-key"))
    assert len(store) == 1
    store.remove_secret(secret("new-key"))
    assert (
        store.authenticate("Bearer new-key", "ns/bot", "gid-1", T0).outcome
        is AuthOutcome.UNAUTHENTICATED
    )


def test_secret_missing_contract_fields_grants_nothing() -> None:
    bad = secret("k")
    del bad["metadata"]["annotations"]["promethios.ai/governance-identity"]
    assert entries_from_secret(bad) == []
    garbage = secret("k")
    garbage["data"]["apiKeySha256"] = "!!!"
    assert entries_from_secret(garbage) == []


def test_auth_is_fast() -> None:
    import time

    store = KeyStore()
    for i in range(1000):
        store.add_key(f"key-{i}", f"ns/a{i}", f"g{i}")
    started = time.perf_counter()
    for _ in range(10_000):
        store.authenticate("Bearer key-500", "ns/a500", "g500", T0)
    per_call = (time.perf_counter() - started) / 10_000
    assert per_call < 50e-6


# -- trust ------------------------------------------------------------------------------


def test_trust_formula_weights_and_linear_recovery() -> None:
    scoring = TrustScoring()
    assert trust_after([], scoring, T0) == 1.0
    assert trust_after([("high", T0)], scoring, T0) == pytest.approx(0.85)
    assert trust_after([("critical", T0), ("medium", T0)], scoring, T0) == pytest.approx(0.55)
    # 0.05 per hour: after 2 h a high violation has 0.05 debt left.
    assert trust_after([("high", T0)], scoring, T0 + 7200) == pytest.approx(0.95)
    assert trust_after([("high", T0)], scoring, T0 + 4 * 3600) == 1.0


def test_trust_debt_is_capped_and_custom_weights_apply() -> None:
    scoring = TrustScoring(weights=SeverityWeights(low=0.5), recovery_per_hour=0.5)
    assert trust_after([("critical", T0)] * 10, scoring, T0) == 0.0
    assert trust_after([("critical", T0)] * 10, scoring, T0 + 3600) == pytest.approx(0.5)
    assert trust_after([("low", T0)], scoring, T0) == pytest.approx(0.5)


def test_trust_from_score_round_trip() -> None:
    assert TrustDebt.from_score(0.8, T0).score(T0, 0.05) == pytest.approx(0.8)
    assert TrustDebt.from_score(None, T0).score(T0, 0.05) == 1.0


# -- idempotency and rate limit ---------------------------------------------------------


def test_idempotency_ttl_and_bound() -> None:
    cache = IdempotencyCache(ttl=10, max_keys=3)
    assert not cache.check_and_add("a", "k1", T0)
    assert cache.check_and_add("a", "k1", T0 + 1)
    assert not cache.check_and_add("b", "k1", T0)  # per agent
    assert not cache.check_and_add("a", "k1", T0 + 20)  # expired
    for key in ("k2", "k3", "k4"):
        cache.add("a", key, T0 + 21)
    assert not cache.seen("a", "k1", T0 + 21)  # evicted beyond max_keys


def test_token_bucket() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", T0) for _ in range(3)] == [None, None, None]
    wait = limiter.take("a", T0)
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert limiter.take("b", T0) is None
    assert limiter.take("a", T0 + 0.5) is None


# -- enforcement ------------------------------------------------------------------------


def test_breach_reasons() -> None:
    assert enf.breach_reason(["critical"], 1.0, 0.6, 0.5) is not None
    assert enf.breach_reason(["high"], 0.8, 0.65, 0.7) is not None  # crossed
    assert enf.breach_reason(["high"], 0.6, 0.45, 0.7) is None  # already below: no edge
    assert enf.breach_reason(["low"], 1.0, 0.99, 0.7) is None


@pytest.mark.parametrize(
    ("on_breach", "action"),
    [("Suspend", "Suspended"), ("Quarantine", "Quarantined"), ("Alert", "None")],
)
def test_enforcement_decision(on_breach: str, action: str) -> None:
    setting = BreachAction(on_breach)
    first = enf.decide(enf.EnforcementState(), setting, 0, "trust fell", T0)
    assert (first.action, first.breach, first.since, first.critical_breach) == (action, 1, T0, 0)
    # a second breach while outstanding does not bump the counter
    assert enf.decide(first, setting, 0, "again", T0 + 1) == first
    # a critical violation while breach 1 is outstanding marks breach 1 critical
    marked = enf.decide(first, setting, 0, "critical", T0 + 1, critical=True)
    assert (marked.breach, marked.critical_breach) == (1, 1)
    # acknowledged: released, and the next breach is n+1 (critical only if it says so)
    released = enf.decide(marked, setting, 1, None, T0 + 2)
    assert (released.action, released.breach, released.critical_breach) == ("None", 1, 1)
    assert not released.critical_outstanding(1)
    second = enf.decide(released, setting, 1, "critical", T0 + 3, critical=True)
    assert (second.breach, second.critical_breach) == (2, 2)
    assert second.critical_outstanding(1)


# -- flush policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dirty", "urgent", "significant", "age", "expected"),
    [
        (False, False, False, 100, False),
        (True, False, False, 10, False),
        (True, False, False, 30, True),
        (True, False, True, 1, True),
        (False, True, False, 0, True),
    ],
)
def test_flush_due(dirty, urgent, significant, age, expected) -> None:
    assert (
        flush_due(
            dirty=dirty,
            urgent=urgent,
            significant=significant,
            last_write=T0,
            now=T0 + age,
            interval=30,
        )
        is expected
    )


# -- aggregation ------------------------------------------------------------------------


def violation(severity: str, vtype: str = "pii", key: str | None = None) -> PolicyViolation:
    return PolicyViolation.model_validate(
        {
            "type": vtype,
            "severity": severity,
            "description": "d",
            "context": {"x": 1},
            "idempotencyKey": key,
        }
    )


def heartbeat(status: str = "active") -> HeartbeatReport:
    return HeartbeatReport.model_validate(
        {"agentId": "ns/bot", "status": status, "uptime": 5, "lastActivity": "2024-01-01T00:00:00Z"}
    )


def test_aggregation_counts_recent_and_conditions() -> None:
    agg = Aggregator()
    state = agg.upsert_agent(
        agent_config("ns", "bot", trust_threshold=0.7, on_breach="Suspend"), T0
    )
    assert state.conditions["HeartbeatFresh"].status == "Unknown"
    agg.heartbeat(state, heartbeat(), "hb1", T0 + 1)
    assert agg.heartbeat(state, heartbeat(), "hb1", T0 + 2).duplicates == 1
    assert state.conditions["HeartbeatFresh"].status == "True"
    for i in range(25):
        agg.violations(state, [violation("low", key=f"v{i}")], None, T0 + 3 + i)
    assert agg.violations(state, [violation("low", key="v24")], None, T0 + 40).duplicates == 1
    body = encode_status(state, T0 + 40)
    gov = body["governance"]
    assert gov["violations"] == {"low": 25, "medium": 0, "high": 0, "critical": 0, "total": 25}
    assert len(gov["recentViolations"]) == 20
    assert gov["recentViolations"][0]["id"] == "v24"  # newest first
    assert "context" not in json.dumps(body)
    outcome = agg.violations(state, [violation("critical", key="c1")], None, T0 + 50)
    assert outcome.accepted == 1
    assert state.enforcement.action == "Suspended"
    compliant = state.conditions["PolicyCompliant"]
    assert (compliant.status, compliant.reason) == ("False", "CriticalViolation")


def test_stale_transition_and_last_transition_time() -> None:
    agg = Aggregator()
    state = agg.upsert_agent(
        agent_config("ns", "bot", heartbeat_interval_seconds=1, missed_heartbeats_before_stale=2),
        T0,
    )
    agg.heartbeat(state, heartbeat(), None, T0)
    since = state.conditions["HeartbeatFresh"].since
    agg.heartbeat(state, heartbeat(), None, T0 + 1)
    assert state.conditions["HeartbeatFresh"].since == since  # no transition, no new time
    from promethios.ingest.conditions import refresh

    assert refresh(state, T0 + 3.5)
    cond = state.conditions["HeartbeatFresh"]
    assert (cond.status, cond.reason, cond.since) == ("False", "HeartbeatStale", T0 + 3.5)


def test_trust_below_threshold_and_acknowledgement() -> None:
    agg = Aggregator()
    config = agent_config("ns", "bot", trust_threshold=0.9, on_breach="Quarantine")
    state = agg.upsert_agent(config, T0)
    agg.violations(state, [violation("high", key="h1")], None, T0)
    assert state.enforcement.action == "Quarantined"
    assert state.conditions["PolicyCompliant"].reason == "TrustBelowThreshold"
    agg.upsert_agent(
        agent_config(
            "ns", "bot", trust_threshold=0.9, on_breach="Quarantine", acknowledged_breach=1
        ),
        T0 + 1,
    )
    assert (state.enforcement.action, state.enforcement.breach) == ("None", 1)


def test_load_status_resumes_counters() -> None:
    agg = Aggregator()
    state = agg.upsert_agent(agent_config("ns", "bot"), T0)
    agg.violations(state, [violation("high", key="h1"), violation("critical", key="c1")], None, T0)
    body = encode_status(state, T0)
    fresh = Aggregator().upsert_agent(agent_config("ns", "bot"), T0 + 10, body)
    assert fresh.counts["critical"] == 1 and fresh.counts["high"] == 1
    assert [v.id for v in fresh.recent] == ["c1", "h1"] or [v.id for v in fresh.recent] == [
        "h1",
        "c1",
    ]
    assert fresh.trust_score(T0 + 10) == pytest.approx(state.trust_score(T0), abs=1e-3)
    # a violation id already in status is not counted again after a restart
    assert (
        Aggregator().violations(fresh, [violation("high", key="h1")], None, T0 + 11).duplicates == 1
    )
    load_status(fresh, {}, T0)


def test_summary_ranges() -> None:
    agg = Aggregator()
    state = agg.upsert_agent(agent_config("ns", "bot"), T0)
    agg.heartbeat(state, heartbeat(), None, T0)
    agg.violations(state, [violation("low", "a", "1")], None, T0)
    agg.violations(state, [violation("high", "b", "2")], None, T0 + 3000)
    summary = agg.summary(1000, T0 + 3600)
    assert summary["fleet"]["violations"]["bySeverity"]["high"] == 1
    assert summary["fleet"]["violations"]["total"] == 1
    assert summary["fleet"]["agents"]["stale"] == 1
    assert agg.summary(7200, T0 + 3600)["fleet"]["violations"]["byType"] == {"a": 1, "b": 1}


# -- events -----------------------------------------------------------------------------


def test_event_aggregation_and_message() -> None:
    events = ev.EventAggregator(window=600)
    first = events.record("ns", "bot", "pii", "high", T0)
    again = events.record("ns", "bot", "pii", "high", T0 + 100)
    other = events.record("ns", "bot", "pii", "critical", T0 + 100)
    later = events.record("ns", "bot", "pii", "high", T0 + 800)
    assert first.create and not again.create and again.name == first.name and again.count == 2
    assert other.create and later.create and later.name != first.name
    assert not ev.wants_event("low") and ev.wants_event("medium")
    text = ev.message("pii", "high", "x" * 1000)
    assert len(text) < 300
    body = ev.event_body(first, "ns", "bot", "uid", "PolicyViolation", text)
    assert body["type"] == "Warning" and body["involvedObject"]["kind"] == "GovernedAgent"


# -- alerts -----------------------------------------------------------------------------

ALERT = Alert(
    "ns", "bot", "v1", "pii", "critical", "leaked", "2024-01-01T00:00:00Z", 0.5, "Suspended"
)


def test_webhook_signature_verifies() -> None:
    sink = ResolvedSink("hook", "webhook", "http://x/", signing_secret=b"s3cret")
    now = 1_700_000_000.0
    _url, headers, body = build_request(sink, ALERT, now)
    header = headers["X-Promethios-Signature"]
    assert verify_signature(body, b"s3cret", header, now + 299)
    assert not verify_signature(body, b"s3cret", header, now + 301)
    assert not verify_signature(body + b" ", b"s3cret", header, now)
    assert header == sign(body, b"s3cret", 1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"  # Stripe's scheme: t and v1 over "t.body"
    assert verify_signature(body, b"s3cret", f"t=1700000000,v1=00,v1={expected}", now)
    assert json.loads(body)["violation"]["severity"] == "critical"
    unsigned = build_request(ResolvedSink("hook", "webhook", "http://x/"), ALERT, now)[1]
    assert "X-Promethios-Signature" not in unsigned


def test_slack_and_pagerduty_formats() -> None:
    slack = json.loads(slack_body(ALERT))
    assert "ns/bot" in slack["text"] and slack["blocks"]
    pd = json.loads(pagerduty_body(ALERT, "rk"))
    assert pd["routing_key"] == "rk" and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "critical" and pd["payload"]["source"] == "ns/bot"
    assert pd["dedup_key"]
    high = Alert("ns", "bot", "v", "t", "high", "", "", 1.0)
    assert json.loads(pagerduty_body(high, "rk"))["payload"]["severity"] == "error"


def test_min_severity_and_dedup() -> None:
    sink = ResolvedSink("s", "slack", "http://x", min_severity="high")
    assert wanted(sink, ALERT)
    assert not wanted(sink, Alert("ns", "bot", "v", "t", "medium", "", "", 1.0))
    dedup = Deduplicator(window=60)
    assert (
        dedup.first(ALERT, T0) and not dedup.first(ALERT, T0 + 30) and dedup.first(ALERT, T0 + 61)
    )


def test_datetime_helpers() -> None:
    from promethios.ingest.codec import rfc3339

    assert rfc3339(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) == "2024-01-01T00:00:00Z"
