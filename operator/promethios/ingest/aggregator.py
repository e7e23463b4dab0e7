"""Per-agent governance state, aggregated from reports (pure: the clock is passed in).

The :class:`Aggregator` owns one :class:`~.state.AgentState` per known GovernedAgent and
the idempotency memory. Reports change that state: a heartbeat, a metrics report (its
embedded violations count like reported ones), violations (counted once per id across
retries, restarts and replicas). After every change :func:`.conditions.refresh`
re-evaluates the conditions; :func:`.codec.encode_status` renders the status; with
several replicas :mod:`.merge` rebases the view on what another replica stored.
The server trust score is :mod:`.trust`'s; the agent's own is kept beside it as
``reportedTrustScore``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import deque
from typing import Any

from ..api.common import Severity
from ..api.conditions import HEARTBEAT_FRESH
from ..api.wire import HeartbeatReport, MetricsReport, PolicyViolation
from . import enforcement as enf
from . import history
from .agents import AgentConfig
from .codec import decode_status, fingerprint
from .conditions import refresh
from .idempotency import IdempotencyCache
from .merge import foreign, newer, rebase
from .pending import PendingSnapshot
from .records import Outcome, Recorded
from .state import MAX_TYPES_PER_AGENT, VIOLATION_KEYS, AgentState, StoredAgent
from .summary import fleet_summary
from .trust import TrustDebt, weight


def violation_key(violation_id: str) -> str:
    """The replay marker of a violation id: base64url of SHA-256's first 9 bytes (12 chars)."""
    digest = hashlib.sha256(violation_id.encode("utf-8", "surrogatepass")).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def violation_id(violation: PolicyViolation, key: str | None, index: int, count: int) -> str:
    """The violation's own key, else the report key (``.<i>`` in a batch), else random."""
    if violation.idempotency_key:
        return violation.idempotency_key
    if key:
        return key if count == 1 else f"{key[:120]}.{index}"
    return "srv-" + secrets.token_hex(8)


def load_status(state: AgentState, status: dict[str, Any], now: float) -> None:
    """Resume from a previously written status, so a restart does not reset counters."""
    stored = decode_status(status, now)
    state.heartbeat_state = stored.heartbeat_state
    state.last_heartbeat = stored.last_heartbeat
    state.uptime = stored.uptime
    state.last_activity = stored.last_activity
    state.counts.update(stored.counts)
    state.lost.update(stored.lost)
    state.interactions = stored.interactions
    state.response_time_ms = stored.response_time_ms
    state.reported_trust = stored.reported_trust
    state.last_violation_time = stored.last_violation_time
    state.trust = TrustDebt.from_score(stored.trust_score, now)
    state.buckets = history.combine(stored.buckets, {})
    state.recent.extendleft(reversed(stored.recent))
    state.keys = deque(stored.keys, maxlen=VIOLATION_KEYS)
    state.enforcement = stored.enforcement
    state.conditions.update(stored.conditions)


def _record_lost(
    state: AgentState, total: int | None, by_severity: dict[Severity, int] | None
) -> tuple[tuple[str, int], ...]:
    """Add the drops a sidecar reported; without a breakdown they count as low (the
    sidecar drops the least severe first). The (severity, count) pairs recorded."""
    counts = {str(severity): count for severity, count in (by_severity or {}).items() if count}
    if total and not counts:
        counts = {str(Severity.LOW): total}
    for severity, count in counts.items():
        state.lost[severity] += count
        state.pending.lost[severity] += count
    return tuple(sorted(counts.items()))


class Aggregator:
    """All agents' states plus the idempotency memory; every method takes ``now``."""

    def __init__(
        self,
        idempotency_ttl: float = 3600.0,
        idempotency_max_keys: int = 4096,
        history_seconds: float = 86400.0,
        history_max_events: int = 10_000,
    ) -> None:
        self.agents: dict[str, AgentState] = {}
        self._keys = IdempotencyCache(idempotency_ttl, idempotency_max_keys)
        self._history_seconds = history_seconds
        self._history_max = history_max_events

    # -- agents ------------------------------------------------------------------------

    def upsert_agent(
        self,
        config: AgentConfig,
        now: float,
        status: dict[str, Any] | None = None,
        stored: StoredAgent | None = None,
    ) -> AgentState:
        """Add an agent (loading counters from its status) or update its config.

        ``stored`` (the object as the API server has it, with its resourceVersion)
        replaces ``status``; for a known agent it is what :meth:`observe` takes in.
        A new agent's stale window counts from its stored last heartbeat, else from its
        creation: a (re)started replica marks at once what went silent before it started.
        """
        state = self.agents.get(config.agent_id)
        if state is None:
            created = stored.created_at if stored is not None else None
            since = min(now, created) if created is not None else now
            state = AgentState(config=config, known_since=since, trust=TrustDebt(0.0, now))
            if stored is not None:
                status = stored.status
            if status:
                load_status(state, status, now)
            if stored is not None:  # the view is the stored status: nothing foreign in it
                state.stored = stored
                state.written = fingerprint(stored.status)
            self.agents[config.agent_id] = state
        else:
            state.config = config
            if stored is not None:
                self.observe(state, stored, now)
        refresh(state, now)
        return state

    @staticmethod
    def observe(state: AgentState, stored: StoredAgent, now: float) -> bool:
        """Take in a newer stored object; rebase the view on it if another replica wrote it.

        While a write of this replica is in flight the rebase waits for its outcome
        (:meth:`after_write`). True if the view was rebased.
        """
        if state.stored is not None and not newer(
            stored.resource_version, state.stored.resource_version
        ):
            return False
        state.stored = stored
        if state.writing or not foreign(state):
            return False
        rebase(state, now)
        return True

    @staticmethod
    def prepare_write(state: AgentState, now: float) -> PendingSnapshot:
        """Before rendering a write: rebase on a foreign stored status; the deltas carried."""
        if foreign(state):
            rebase(state, now)
        return state.pending.snapshot()

    @staticmethod
    def after_write(
        state: AgentState,
        snapshot: PendingSnapshot | None,
        body: dict[str, Any] | None,
        stored: StoredAgent | None,
        now: float,
    ) -> None:
        """A write ended: on success (``body``) settle its deltas and remember it as ours."""
        if snapshot is not None and body is not None:
            state.pending.settle(snapshot)
            state.written = fingerprint(body)
            if stored is not None and (
                state.stored is None
                or newer(stored.resource_version, state.stored.resource_version)
            ):
                state.stored = stored
        if foreign(state):  # another replica wrote while this write was in flight
            rebase(state, now)

    def remove_agent(self, agent_id: str) -> None:
        """Forget a deleted agent."""
        self.agents.pop(agent_id, None)
        self._keys.drop_agent(agent_id)

    def summary(self, range_seconds: float, now: float) -> dict[str, Any]:
        """Fleet and per-agent aggregates over the last ``range_seconds``."""
        return fleet_summary(self.agents.values(), range_seconds, now)

    # -- reports -----------------------------------------------------------------------

    def heartbeat(
        self, state: AgentState, report: HeartbeatReport, key: str | None, now: float
    ) -> Outcome:
        """Record a heartbeat (counted once per idempotency key)."""
        if key and self._keys.check_and_add(state.config.agent_id, "hb:" + key, now):
            return Outcome(0, 1)
        changed = state.heartbeat_state != report.status
        state.heartbeat_state = report.status
        state.last_heartbeat = now
        state.uptime = report.uptime
        state.last_activity = report.last_activity.timestamp()
        fresh = state.conditions.get(HEARTBEAT_FRESH)
        if changed or fresh is None or fresh.status != "True":
            state.version += 1
            refresh(state, now)
        else:  # only timestamps moved: the cheap path, flushed on the heartbeat interval
            state.heartbeat_version += 1
        return Outcome(1, 0)

    def metrics(
        self, state: AgentState, report: MetricsReport, key: str | None, now: float
    ) -> Outcome:
        """Record a metrics report; its violations are recorded like reported ones."""
        if key and self._keys.check_and_add(state.config.agent_id, "m:" + key, now):
            return Outcome(0, 1)
        metrics = report.metrics
        # The seed's trustScore has no stated scale: 0-1 is taken as is, above 1 as percent.
        reported = metrics.trust_score
        state.reported_trust = round(reported / 100.0 if reported > 1 else reported, 6)
        state.interactions = max(state.interactions, metrics.interactions)
        state.response_time_ms = metrics.response_time
        state.pending.metrics += 1
        state.version += 1
        lost = _record_lost(
            state, metrics.dropped_violations, metrics.dropped_violations_by_severity
        )
        recorded = (
            self.violations(state, metrics.violations, key, now) if metrics.violations else None
        )
        refresh(state, now)
        return Outcome(1, 0, recorded.violations if recorded else (), lost)

    def violations(
        self, state: AgentState, violations: list[PolicyViolation], key: str | None, now: float
    ) -> Outcome:
        """Record violations not seen before (by id: per-violation key or derived one)."""
        agent_id = state.config.agent_id
        known = {item.id for item in state.recent}
        markers = set(state.keys)
        added: list[Recorded] = []
        duplicates = 0
        for index, violation in enumerate(violations):
            vid = violation_id(violation, key, index, len(violations))
            marker = violation_key(vid)
            if (
                vid in known
                or marker in markers
                or self._keys.check_and_add(agent_id, "v:" + vid, now)
            ):
                duplicates += 1
                continue
            known.add(vid)
            markers.add(marker)
            added.append(self._record(state, vid, marker, violation, now))
        if added:
            self._apply_breach(state, added, now)
            state.version += 1
        refresh(state, now)
        return Outcome(len(added), duplicates, tuple(added))

    def _record(
        self, state: AgentState, vid: str, marker: str, violation: PolicyViolation, now: float
    ) -> Recorded:
        severity = str(violation.severity)
        recorded = Recorded(vid, violation.type, severity, violation.description[:1024], now)
        state.counts[severity] += 1
        history.add(state.buckets, now, severity)
        history.prune(state.buckets, now)
        vtype = (
            violation.type
            if (violation.type in state.by_type or len(state.by_type) < MAX_TYPES_PER_AGENT)
            else "other"
        )
        state.by_type[vtype] = state.by_type.get(vtype, 0) + 1
        state.recent.appendleft(recorded)
        state.keys.appendleft(marker)
        state.last_violation_time = now
        state.pending.add(recorded, marker, weight(state.config.scoring.weights, severity))
        self._remember(state, recorded, now)
        return recorded

    def _remember(self, state: AgentState, recorded: Recorded, now: float) -> None:
        history = state.history
        history.append((now, recorded.severity, recorded.type))
        while history and (
            len(history) > self._history_max or history[0][0] < now - self._history_seconds
        ):
            history.popleft()

    @staticmethod
    def _apply_breach(state: AgentState, added: list[Recorded], now: float) -> None:
        """Take the new violations' weights off the trust; raise a breach if one happened."""
        config = state.config
        scoring = config.scoring
        trust_before = state.trust_score(now)
        total = sum(weight(scoring.weights, item.severity) for item in added)
        state.trust.add(total, now, scoring.recovery_per_hour)
        severities = [item.severity for item in added]
        reason = enf.breach_reason(
            severities, trust_before, state.trust_score(now), config.governance.trust_threshold
        )
        state.enforcement = enf.decide(
            state.enforcement,
            config.on_breach,
            config.acknowledged_breach,
            reason,
            now,
            critical=Severity.CRITICAL in severities,
        )
