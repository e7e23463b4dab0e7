"""Per-agent governance state, aggregated from reports (pure: the clock is passed in).

The :class:`Aggregator` owns one :class:`AgentState` per known GovernedAgent. Reports
change that state; :func:`status_body` renders the fields the ingest API owns in the
GovernedAgent's ``status`` (``heartbeat``, ``governance``, ``enforcement`` and the
``HeartbeatFresh`` / ``PolicyCompliant`` conditions). The server trust score is
:mod:`.trust`'s; the agent's own score is kept beside it as ``reportedTrustScore``.

Conditions
- ``HeartbeatFresh``: True (``HeartbeatReceived``) while the last heartbeat is younger
  than ``missedHeartbeatsBeforeStale x heartbeatIntervalSeconds``; False
  (``HeartbeatStale``) after that; Unknown (``AwaitingHeartbeat``) before the first one
  (False/``HeartbeatStale`` once the window has passed since the agent became known).
- ``PolicyCompliant``: False (``CriticalViolation``) while a breach with a critical
  violation is unacknowledged; else False (``TrustBelowThreshold``) while the server
  trust is below ``trustThreshold``; else True (``Compliant``).
``lastTransitionTime`` changes only when a condition's status changes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api.conditions import format_time, parse_time, transition_time
from ..api.policy import TrustScoring
from ..api.wire import HeartbeatReport, MetricsReport, PolicyViolation
from . import enforcement as enf
from .idempotency import IdempotencyCache
from .trust import TrustDebt, weight

RECENT_VIOLATIONS = 20
VIOLATION_KEYS = 128
"""Replay markers kept in ``status.governance.recentViolationKeys`` (> the sidecar's batch)."""
PENDING_ITEMS = 1024
"""Unflushed violations remembered one by one for the cross-replica duplicate check."""
MAX_TYPES_PER_AGENT = 100
SEVERITIES = ("low", "medium", "high", "critical")
INGEST_MANAGER = "promethios-ingest"
HEARTBEAT_FRESH = "HeartbeatFresh"
POLICY_COMPLIANT = "PolicyCompliant"


@dataclass(frozen=True)
class AgentConfig:
    """What ingest needs from a GovernedAgent's metadata and spec (and its policy)."""

    namespace: str
    name: str
    governance_identity: str = ""
    uid: str = ""
    trust_threshold: float = 0.7
    heartbeat_interval: int = 30
    missed_before_stale: int = 3
    on_breach: str = "Alert"
    acknowledged_breach: int = 0
    alert_sinks: tuple[str, ...] = ()
    policy_name: str = ""
    scoring: TrustScoring = field(default_factory=TrustScoring)

    @property
    def agent_id(self) -> str:
        """``<namespace>/<name>``, the wire contract's agentId."""
        return f"{self.namespace}/{self.name}"

    @property
    def stale_after(self) -> float:
        """Seconds without a heartbeat after which the agent is stale."""
        return float(self.heartbeat_interval * self.missed_before_stale)


@dataclass
class ConditionState:
    """One ingest-owned condition, with the time its status last changed."""

    status: str
    reason: str
    message: str
    since: float


@dataclass(frozen=True)
class Recorded:
    """A violation as recorded (what ``status.governance.recentViolations`` lists)."""

    id: str
    type: str
    severity: str
    description: str
    time: float


@dataclass(frozen=True)
class Outcome:
    """What one report did: newly recorded, duplicates, and the violations it added."""

    accepted: int
    duplicates: int
    violations: tuple[Recorded, ...] = ()


@dataclass(frozen=True, slots=True)
class PendingItem:
    """One violation recorded here and not yet in a successful status write."""

    seq: int
    recorded: Recorded
    marker: str
    weight: float


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """The deltas a status write carries (settled once the write succeeded)."""

    seq: int
    counts: tuple[int, ...]
    weight: float
    metrics: int


@dataclass
class Pending:
    """This replica's deltas since its last successful status write (see :func:`rebase`).

    Counts and trust weight are aggregates; the newest :data:`PENDING_ITEMS` violations
    are kept one by one so a violation another replica already stored can be taken out
    again (beyond that bound only the aggregates remain).
    """

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    weight: float = 0.0
    items: deque[PendingItem] = field(default_factory=lambda: deque(maxlen=PENDING_ITEMS))
    metrics: int = 0
    seq: int = 0

    def add(self, recorded: Recorded, marker: str, weight: float) -> None:
        """A violation was recorded."""
        self.seq += 1
        self.counts[recorded.severity] = self.counts.get(recorded.severity, 0) + 1
        self.weight += weight
        self.items.append(PendingItem(self.seq, recorded, marker, weight))

    def snapshot(self) -> PendingSnapshot:
        """What a write rendered now carries."""
        counts = tuple(self.counts[s] for s in SEVERITIES)
        return PendingSnapshot(self.seq, counts, self.weight, self.metrics)

    def settle(self, snapshot: PendingSnapshot) -> None:
        """A write carrying ``snapshot`` succeeded: only later deltas remain."""
        for severity, count in zip(SEVERITIES, snapshot.counts, strict=True):
            self.counts[severity] = max(0, self.counts[severity] - count)
        self.weight = _tidy(self.weight - snapshot.weight)
        self.metrics = max(0, self.metrics - snapshot.metrics)
        while self.items and self.items[0].seq <= snapshot.seq:
            self.items.popleft()

    def drop_stored(self, ids: set[str], markers: set[str]) -> int:
        """Take out violations already stored (by id or marker); how many were."""
        keep: list[PendingItem] = []
        dropped = 0
        for item in self.items:
            if item.recorded.id in ids or item.marker in markers:
                dropped += 1
                severity = item.recorded.severity
                self.counts[severity] = max(0, self.counts[severity] - 1)
                self.weight = _tidy(self.weight - item.weight)
            else:
                keep.append(item)
        if dropped:
            self.items = deque(keep, maxlen=PENDING_ITEMS)
        return dropped

    @property
    def empty(self) -> bool:
        """No unflushed violation or metrics report."""
        return not self.items and not self.metrics and not any(self.counts.values())


def _tidy(value: float) -> float:
    return 0.0 if value < 1e-9 else value


@dataclass(frozen=True)
class Observed:
    """The latest GovernedAgent this replica knows from the API server (watch or GET)."""

    resource_version: str
    status: dict[str, Any]
    acknowledged: int = 0
    """``spec.governance.acknowledgedBreach`` of the same object."""
    written_at: float | None = None
    """When ingest last changed the status (its managedFields entry), for trust recovery."""


def observed_from_object(obj: dict[str, Any]) -> Observed:
    """The :class:`Observed` view of a GovernedAgent dict."""
    metadata = obj.get("metadata") or {}
    governance = (obj.get("spec") or {}).get("governance") or {}
    ack = governance.get("acknowledgedBreach")
    written_at = None
    for entry in metadata.get("managedFields") or []:
        if entry.get("manager") == INGEST_MANAGER and entry.get("subresource") == "status":
            written_at = _time(entry.get("time"))
    return Observed(
        str(metadata.get("resourceVersion") or ""),
        obj.get("status") or {},
        ack if isinstance(ack, int) else 0,
        written_at,
    )


def newer(version: str, than: str) -> bool:
    """Whether resourceVersion ``version`` is later than ``than``.

    resourceVersions are opaque; etcd's are integers, compared as such. Anything else
    that differs counts as newer (a spurious 409 costs one re-read, never a lost count).
    """
    if version == than:
        return False
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return True


def fingerprint(status: dict[str, Any]) -> tuple[Any, ...]:
    """The ingest-owned values that tell whose write a status is (see :func:`foreign`)."""
    governance = status.get("governance") or {}
    enforcement = status.get("enforcement") or {}
    heartbeat = status.get("heartbeat") or {}
    counts = governance.get("violations") or {}
    return (
        tuple(counts.get(severity, 0) for severity in SEVERITIES),
        tuple(str(item.get("id")) for item in governance.get("recentViolations") or []),
        tuple(governance.get("recentViolationKeys") or ()),
        governance.get("trustScore"),
        governance.get("interactions", 0),
        enforcement.get("action", "None"),
        enforcement.get("breach", 0),
        heartbeat.get("state"),
        heartbeat.get("lastHeartbeat"),
    )


def violation_key(violation_id: str) -> str:
    """The replay marker of a violation id: base64url of SHA-256's first 9 bytes (12 chars)."""
    digest = hashlib.sha256(violation_id.encode("utf-8", "surrogatepass")).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode("ascii")


@dataclass
class AgentState:
    """Everything ingest knows about one agent (bounded)."""

    config: AgentConfig
    known_since: float
    heartbeat_state: str = "unknown"
    last_heartbeat: float | None = None
    uptime: float | None = None
    last_activity: float | None = None
    reported_trust: float | None = None
    interactions: int = 0
    response_time_ms: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    by_type: dict[str, int] = field(default_factory=dict)
    recent: deque[Recorded] = field(default_factory=lambda: deque(maxlen=RECENT_VIOLATIONS))
    last_violation_time: float | None = None
    trust: TrustDebt = field(default_factory=TrustDebt)
    enforcement: enf.Enforcement = field(default_factory=enf.Enforcement)
    critical_breach: int = 0
    conditions: dict[str, ConditionState] = field(default_factory=dict)
    history: deque[tuple[float, str, str]] = field(default_factory=deque)
    version: int = 0
    heartbeat_version: int = 0
    keys: deque[str] = field(default_factory=lambda: deque(maxlen=VIOLATION_KEYS))
    pending: Pending = field(default_factory=lambda: Pending())
    observed: Observed | None = None
    written: tuple[Any, ...] | None = None
    writing: bool = False

    def trust_score(self, now: float) -> float:
        """Server trust at ``now``."""
        return self.trust.score(now, self.config.scoring.recovery_per_hour)

    def stale(self, now: float) -> bool:
        """No heartbeat within the stale window (counting from when the agent was known)."""
        reference = self.last_heartbeat if self.last_heartbeat is not None else self.known_since
        return now - reference > self.config.stale_after


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
        observed: Observed | None = None,
    ) -> AgentState:
        """Add an agent (loading counters from its status) or update its config.

        ``observed`` (the object as the API server has it, with its resourceVersion)
        replaces ``status``; for a known agent it is what :meth:`observe` takes in.
        """
        state = self.agents.get(config.agent_id)
        if state is None:
            state = AgentState(config=config, known_since=now)
            state.trust = TrustDebt(0.0, now)
            if observed is not None:
                status = observed.status
            if status:
                load_status(state, status, now)
            if observed is not None:  # the view is the stored status: nothing foreign in it
                state.observed = observed
                state.written = fingerprint(observed.status)
            self.agents[config.agent_id] = state
        else:
            state.config = config
            if observed is not None:
                self.observe(state, observed, now)
        refresh(state, now)
        return state

    @staticmethod
    def observe(state: AgentState, observed: Observed, now: float) -> bool:
        """Take in a newer stored object; rebase the view on it if another replica wrote it.

        While a write of this replica is in flight the rebase waits for its outcome
        (:meth:`after_write`). True if the view was rebased.
        """
        if state.observed is not None and not newer(
            observed.resource_version, state.observed.resource_version
        ):
            return False
        state.observed = observed
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
        observed: Observed | None,
        now: float,
    ) -> None:
        """A write ended: on success (``body``) settle its deltas and remember it as ours."""
        if snapshot is not None and body is not None:
            state.pending.settle(snapshot)
            state.written = fingerprint(body)
            if observed is not None and (
                state.observed is None
                or newer(observed.resource_version, state.observed.resource_version)
            ):
                state.observed = observed
        if foreign(state):  # another replica wrote while this write was in flight
            rebase(state, now)

    def remove_agent(self, agent_id: str) -> None:
        """Forget a deleted agent."""
        self.agents.pop(agent_id, None)
        self._keys.drop_agent(agent_id)

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
        state.pending.metrics = True
        state.version += 1
        recorded = (
            self.violations(state, metrics.violations, key, now) if metrics.violations else None
        )
        refresh(state, now)
        return Outcome(1, 0, recorded.violations if recorded else ())

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
            trust_before = state.trust_score(now)
            self._apply_trust(state, added, now)
            reason = enf.breach_reason(
                [v.severity for v in added],
                trust_before,
                state.trust_score(now),
                state.config.trust_threshold,
            )
            self._enforce(state, reason, any(v.severity == "critical" for v in added), now)
            state.version += 1
        refresh(state, now)
        return Outcome(len(added), duplicates, tuple(added))

    def _record(
        self, state: AgentState, vid: str, marker: str, violation: PolicyViolation, now: float
    ) -> Recorded:
        recorded = Recorded(
            vid, violation.type, violation.severity, violation.description[:1024], now
        )
        state.counts[violation.severity] += 1
        vtype = (
            violation.type
            if (violation.type in state.by_type or len(state.by_type) < MAX_TYPES_PER_AGENT)
            else "other"
        )
        state.by_type[vtype] = state.by_type.get(vtype, 0) + 1
        state.recent.appendleft(recorded)
        state.keys.appendleft(marker)
        state.last_violation_time = now
        w = weight(state.config.scoring.weights, recorded.severity)
        state.pending.add(recorded, marker, w)
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
    def _apply_trust(state: AgentState, added: list[Recorded], now: float) -> None:
        scoring = state.config.scoring
        total = sum(weight(scoring.weights, v.severity) for v in added)
        state.trust.add(total, now, scoring.recovery_per_hour)

    @staticmethod
    def _enforce(state: AgentState, reason: str | None, critical: bool, now: float) -> None:
        config = state.config
        before = state.enforcement
        state.enforcement = enf.decide(
            before, config.on_breach, config.acknowledged_breach, reason, now
        )
        if critical and state.enforcement.breach > before.breach:
            state.critical_breach = state.enforcement.breach
        elif critical and before.outstanding(config.acknowledged_breach):
            state.critical_breach = before.breach

    # -- fleet summary -----------------------------------------------------------------

    def summary(self, range_seconds: float, now: float) -> dict[str, Any]:
        """Fleet and per-agent aggregates over the last ``range_seconds``."""
        since = now - range_seconds
        fleet: dict[str, Any] = {
            "agents": {
                "total": 0,
                "active": 0,
                "inactive": 0,
                "error": 0,
                "stale": 0,
                "unknown": 0,
            },
            "violations": {"total": 0, "bySeverity": dict.fromkeys(SEVERITIES, 0), "byType": {}},
        }
        agents = []
        for agent_id in sorted(self.agents):
            entry = agent_summary(self.agents[agent_id], since, now)
            agents.append(entry)
            _add_to_fleet(fleet, entry)
        trusts = [a["trustScore"] for a in agents]
        fleet["trust"] = {
            "min": min(trusts, default=None),
            "mean": round(sum(trusts) / len(trusts), 6) if trusts else None,
        }
        return {
            "rangeSeconds": range_seconds,
            "generatedAt": rfc3339(now),
            "fleet": fleet,
            "agents": agents,
        }


def agent_summary(state: AgentState, since: float, now: float) -> dict[str, Any]:
    """One agent's aggregates since ``since``."""
    by_severity = dict.fromkeys(SEVERITIES, 0)
    by_type: dict[str, int] = {}
    for at, severity, vtype in state.history:
        if at >= since:
            by_severity[severity] += 1
            by_type[vtype] = by_type.get(vtype, 0) + 1
    return {
        "agentId": state.config.agent_id,
        "state": "stale" if state.stale(now) else state.heartbeat_state,
        "lastHeartbeat": rfc3339(state.last_heartbeat),
        "trustScore": state.trust_score(now),
        "reportedTrustScore": state.reported_trust,
        "violations": {
            "total": sum(by_severity.values()),
            "bySeverity": by_severity,
            "byType": by_type,
        },
        "enforcement": state.enforcement.action,
    }


def _add_to_fleet(fleet: dict[str, Any], entry: dict[str, Any]) -> None:
    agents = fleet["agents"]
    agents["total"] += 1
    agents[entry["state"]] = agents.get(entry["state"], 0) + 1
    violations = fleet["violations"]
    violations["total"] += entry["violations"]["total"]
    for severity, count in entry["violations"]["bySeverity"].items():
        violations["bySeverity"][severity] += count
    for vtype, count in entry["violations"]["byType"].items():
        violations["byType"][vtype] = violations["byType"].get(vtype, 0) + count


def violation_id(violation: PolicyViolation, key: str | None, index: int, count: int) -> str:
    """The violation's own key, else the report key (``.<i>`` in a batch), else random."""
    if violation.idempotency_key:
        return violation.idempotency_key
    if key:
        return key if count == 1 else f"{key[:120]}.{index}"
    return "srv-" + secrets.token_hex(8)


# -- conditions ----------------------------------------------------------------------------


def refresh(state: AgentState, now: float) -> bool:
    """Re-evaluate enforcement release and the conditions; True if a condition flipped."""
    config = state.config
    released = enf.release(state.enforcement, config.acknowledged_breach)
    changed = released != state.enforcement
    state.enforcement = released
    changed |= _set(state, HEARTBEAT_FRESH, *_heartbeat_condition(state, now), now)
    changed |= _set(state, POLICY_COMPLIANT, *_compliance_condition(state, now), now)
    if changed:
        state.version += 1
    return changed


def _heartbeat_condition(state: AgentState, now: float) -> tuple[str, str, str]:
    window = state.config.stale_after
    if state.stale(now):
        return "False", "HeartbeatStale", f"no heartbeat for more than {window:g}s"
    if state.last_heartbeat is None:
        return "Unknown", "AwaitingHeartbeat", "no heartbeat received yet"
    return "True", "HeartbeatReceived", f"last heartbeat within {window:g}s"


def _compliance_condition(state: AgentState, now: float) -> tuple[str, str, str]:
    config = state.config
    if state.critical_breach > config.acknowledged_breach:
        return (
            "False",
            "CriticalViolation",
            f"critical violation in breach {state.critical_breach}; acknowledge it in "
            "spec.governance.acknowledgedBreach",
        )
    trust = state.trust_score(now)
    if trust < config.trust_threshold:
        return (
            "False",
            "TrustBelowThreshold",
            f"trust {trust:.3f} < threshold {config.trust_threshold:.3f}",
        )
    return "True", "Compliant", f"trust {trust:.3f} >= threshold {config.trust_threshold:.3f}"


def _set(state: AgentState, ctype: str, status: str, reason: str, message: str, now: float) -> bool:
    """Set a condition; True when its status changed (only then does ``since`` move)."""
    current = state.conditions.get(ctype)
    previous_status, previous_since = (current.status, current.since) if current else (None, None)
    since = transition_time(previous_status, previous_since, status, now)
    state.conditions[ctype] = ConditionState(status, reason, message, since)
    # Reason/message may be refined without a transition, but rounding noise in the
    # trust message must not count as a change worth a write.
    return status != previous_status


# -- status rendering and loading ----------------------------------------------------------


def rfc3339(epoch: float | None) -> str | None:
    """``2024-01-02T03:04:05Z`` (seconds precision, what metav1.Time stores)."""
    if epoch is None:
        return None
    return format_time(datetime.fromtimestamp(epoch, UTC))


def status_body(state: AgentState, now: float) -> dict[str, Any]:
    """The ingest-owned part of ``status`` for a server-side apply."""
    enforcement = state.enforcement
    return {
        "heartbeat": _drop_none(
            {
                "state": state.heartbeat_state,
                "lastHeartbeat": rfc3339(state.last_heartbeat),
                "uptimeSeconds": state.uptime,
                "lastActivity": rfc3339(state.last_activity),
            }
        ),
        "governance": _drop_none(
            {
                "trustScore": state.trust_score(now),
                "reportedTrustScore": state.reported_trust,
                "interactions": state.interactions,
                "responseTimeMs": state.response_time_ms,
                "violations": {**state.counts, "total": sum(state.counts.values())},
                "recentViolations": [_recent(item) for item in state.recent],
                "lastViolationTime": rfc3339(state.last_violation_time),
                "recentViolationKeys": list(state.keys),
            }
        ),
        "enforcement": _drop_none(
            {
                "action": enforcement.action,
                "breach": enforcement.breach,
                "reason": enforcement.reason[:1024],
                "since": rfc3339(enforcement.since),
            }
        ),
        "conditions": [
            {
                "type": ctype,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": rfc3339(cond.since),
            }
            for ctype, cond in sorted(state.conditions.items())
        ],
    }


def _recent(item: Recorded) -> dict[str, Any]:
    return {
        "id": item.id,
        "type": item.type,
        "severity": item.severity,
        "description": item.description,
        "time": rfc3339(item.time),
    }


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _time(value: Any) -> float | None:
    moment = parse_time(value) if isinstance(value, str) else None
    return moment.timestamp() if moment is not None else None


def load_status(state: AgentState, status: dict[str, Any], now: float) -> None:
    """Resume from a previously written status, so a restart does not reset counters."""
    heartbeat = status.get("heartbeat") or {}
    state.heartbeat_state = str(heartbeat.get("state") or "unknown")
    state.last_heartbeat = _time(heartbeat.get("lastHeartbeat"))
    state.uptime = heartbeat.get("uptimeSeconds")
    state.last_activity = _time(heartbeat.get("lastActivity"))
    _load_governance(state, status.get("governance") or {}, now)
    _load_enforcement(state, status.get("enforcement") or {})
    for cond in status.get("conditions") or []:
        if cond.get("type") in (HEARTBEAT_FRESH, POLICY_COMPLIANT):
            since = _time(cond.get("lastTransitionTime")) or now
            state.conditions[cond["type"]] = ConditionState(
                str(cond.get("status")),
                str(cond.get("reason") or "Unknown"),
                str(cond.get("message") or ""),
                since,
            )


def _load_governance(state: AgentState, governance: dict[str, Any], now: float) -> None:
    counts = governance.get("violations") or {}
    for severity in SEVERITIES:
        value = counts.get(severity)
        state.counts[severity] = value if isinstance(value, int) and value >= 0 else 0
    state.interactions = int(governance.get("interactions") or 0)
    state.response_time_ms = governance.get("responseTimeMs")
    state.reported_trust = governance.get("reportedTrustScore")
    state.last_violation_time = _time(governance.get("lastViolationTime"))
    trust = governance.get("trustScore")
    state.trust = TrustDebt.from_score(
        float(trust) if isinstance(trust, int | float) else None, now
    )
    for item in reversed(_stored_recent(governance, now)):
        state.recent.appendleft(item)
    state.keys = deque(_stored_keys(governance), maxlen=VIOLATION_KEYS)


def _stored_recent(governance: dict[str, Any], now: float) -> list[Recorded]:
    recent = []
    for item in governance.get("recentViolations") or []:
        try:
            recent.append(
                Recorded(
                    str(item["id"]),
                    str(item["type"]),
                    str(item["severity"]),
                    str(item.get("description") or ""),
                    _time(item.get("time")) or now,
                )
            )
        except (KeyError, TypeError):
            continue
    return recent


def _stored_keys(governance: dict[str, Any]) -> list[str]:
    keys = governance.get("recentViolationKeys") or []
    return [key for key in keys if isinstance(key, str)][:VIOLATION_KEYS]


def _stored_enforcement(enforcement: dict[str, Any]) -> enf.Enforcement:
    breach = enforcement.get("breach")
    return enf.Enforcement(
        str(enforcement.get("action") or "None"),
        breach if isinstance(breach, int) else 0,
        str(enforcement.get("reason") or ""),
        _time(enforcement.get("since")),
    )


def _load_enforcement(state: AgentState, enforcement: dict[str, Any]) -> None:
    state.enforcement = _stored_enforcement(enforcement)
    if "critical" in state.enforcement.reason:
        state.critical_breach = state.enforcement.breach


# -- replicas: the stored status is the source of truth -------------------------------------


def foreign(state: AgentState) -> bool:
    """The stored ingest status is not this replica's last write (another replica's)."""
    observed = state.observed
    return observed is not None and fingerprint(observed.status) != state.written


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def rebase(state: AgentState, now: float) -> None:
    """Make the view the stored status (``state.observed``) plus this replica's deltas.

    Several ingest replicas write one agent's status; each keeps only the deltas it
    recorded since its last successful write (:class:`Pending`) and merges them onto the
    latest stored status before writing it back with that status's resourceVersion as a
    precondition (a 409 means another replica wrote in between: re-read, merge again).
    What wins, field by field:

    - duplicates: a pending violation whose id is in the stored ``recentViolations`` or
      whose marker is in ``recentViolationKeys`` was stored by another replica (or by a
      write whose answer was lost) and is taken out of the deltas, never counted twice;
    - ``violations`` counts: stored + pending, per severity (``total`` is their sum;
      per-type counts are not in the status and stay per replica, like the metrics);
    - ``recentViolations``: union by id of pending and stored, newest first, 20;
      ``recentViolationKeys``: pending markers, then stored ones, distinct, 128;
    - trust: the stored debt (1 - ``trustScore``) brought forward by recovery from when
      ingest last wrote it (its managedFields time), plus the pending weights (cap 1),
      see :mod:`.trust`;
    - ``interactions``: the larger; ``reportedTrustScore`` / ``responseTimeMs``: this
      replica's if it received a metrics report since its last write, else stored;
    - ``heartbeat``: the block with the newer ``lastHeartbeat``; ``lastViolationTime``:
      the newer;
    - ``enforcement``: :func:`.enforcement.merge` (higher breach wins, an action only
      escalates; cleared only by the acknowledgement release);
    - conditions: a stored condition whose status differs from the view's is adopted (so
      its transition time survives), then all are re-evaluated on the merged view.

    With one replica the stored status is always its own last write (:func:`foreign` is
    False), so nothing is rebased and the view is exactly what it was before replicas.
    """
    observed = state.observed
    if observed is None:
        return
    status = observed.status
    governance = status.get("governance") or {}
    stored_recent = _stored_recent(governance, now)
    stored_keys = _stored_keys(governance)
    pending = state.pending
    pending.drop_stored({item.id for item in stored_recent}, set(stored_keys))

    counts = governance.get("violations") or {}
    for severity in SEVERITIES:
        value = counts.get(severity)
        stored = value if isinstance(value, int) and value >= 0 else 0
        state.counts[severity] = stored + pending.counts[severity]

    mine = [item.recorded for item in reversed(pending.items)]  # newest first
    merged: dict[str, Recorded] = {}
    for item in [*mine, *stored_recent]:
        merged.setdefault(item.id, item)
    recent = sorted(merged.values(), key=lambda item: item.time, reverse=True)
    state.recent = deque(recent[:RECENT_VIOLATIONS], maxlen=RECENT_VIOLATIONS)
    keys = _unique([item.marker for item in reversed(pending.items)] + stored_keys)
    state.keys = deque(keys[:VIOLATION_KEYS], maxlen=VIOLATION_KEYS)

    trust = governance.get("trustScore")
    debt = TrustDebt.from_score(
        float(trust) if isinstance(trust, int | float) else None,
        min(now, observed.written_at if observed.written_at is not None else now),
    )
    debt.add(pending.weight, now, state.config.scoring.recovery_per_hour)
    state.trust = debt

    interactions = governance.get("interactions")
    if isinstance(interactions, int):
        state.interactions = max(state.interactions, interactions)
    if not pending.metrics:
        if "reportedTrustScore" in governance:
            state.reported_trust = governance.get("reportedTrustScore")
        if "responseTimeMs" in governance:
            state.response_time_ms = governance.get("responseTimeMs")
    stored_violation = _time(governance.get("lastViolationTime"))
    if stored_violation is not None and (
        state.last_violation_time is None or stored_violation > state.last_violation_time
    ):
        state.last_violation_time = stored_violation

    heartbeat = status.get("heartbeat") or {}
    stored_beat = _time(heartbeat.get("lastHeartbeat"))
    if stored_beat is not None and (
        state.last_heartbeat is None or stored_beat > state.last_heartbeat
    ):
        state.heartbeat_state = str(heartbeat.get("state") or "unknown")
        state.last_heartbeat = stored_beat
        state.uptime = heartbeat.get("uptimeSeconds")
        state.last_activity = _time(heartbeat.get("lastActivity"))

    stored_enforcement = _stored_enforcement(status.get("enforcement") or {})
    acknowledged = max(state.config.acknowledged_breach, observed.acknowledged)
    state.enforcement = enf.merge(state.enforcement, stored_enforcement, acknowledged)
    if "critical" in stored_enforcement.reason:
        state.critical_breach = max(state.critical_breach, stored_enforcement.breach)

    for cond in status.get("conditions") or []:
        ctype = cond.get("type")
        if ctype not in (HEARTBEAT_FRESH, POLICY_COMPLIANT):
            continue
        current = state.conditions.get(ctype)
        if current is None or current.status != str(cond.get("status")):
            state.conditions[ctype] = ConditionState(
                str(cond.get("status")),
                str(cond.get("reason") or "Unknown"),
                str(cond.get("message") or ""),
                _time(cond.get("lastTransitionTime")) or now,
            )
    refresh(state, now)
