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

import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api.policy import TrustScoring
from ..api.wire import HeartbeatReport, MetricsReport, PolicyViolation
from . import enforcement as enf
from .idempotency import IdempotencyCache
from .keystore import parse_rfc3339
from .trust import TrustDebt, weight

RECENT_VIOLATIONS = 20
MAX_TYPES_PER_AGENT = 100
SEVERITIES = ("low", "medium", "high", "critical")
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
        self, config: AgentConfig, now: float, status: dict[str, Any] | None = None
    ) -> AgentState:
        """Add an agent (loading counters from its status) or update its config."""
        state = self.agents.get(config.agent_id)
        if state is None:
            state = AgentState(config=config, known_since=now)
            state.trust = TrustDebt(0.0, now)
            if status:
                load_status(state, status, now)
            self.agents[config.agent_id] = state
        else:
            state.config = config
        refresh(state, now)
        return state

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
        added: list[Recorded] = []
        duplicates = 0
        for index, violation in enumerate(violations):
            vid = violation_id(violation, key, index, len(violations))
            if vid in known or self._keys.check_and_add(agent_id, "v:" + vid, now):
                duplicates += 1
                continue
            known.add(vid)
            added.append(self._record(state, vid, violation, now))
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

    def forget_key(self, agent_id: str, prefix: str, key: str) -> None:
        """Forget a key whose report could not be recorded, so a retry is not a duplicate."""
        self._keys.forget(agent_id, prefix + key)

    def _record(
        self, state: AgentState, vid: str, violation: PolicyViolation, now: float
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
        state.last_violation_time = now
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
    if current is not None and current.status == status:
        # Reason/message may be refined without a transition, but rounding noise in the
        # trust message must not count as a change worth a write.
        current.reason = reason
        current.message = message
        return False
    state.conditions[ctype] = ConditionState(status, reason, message, now)
    return True


# -- status rendering and loading ----------------------------------------------------------


def rfc3339(epoch: float | None) -> str | None:
    """``2024-01-02T03:04:05Z`` (seconds precision, what metav1.Time stores)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    return parse_rfc3339(value) if isinstance(value, str) else None


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
    for item in reversed(governance.get("recentViolations") or []):
        try:
            state.recent.appendleft(
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


def _load_enforcement(state: AgentState, enforcement: dict[str, Any]) -> None:
    breach = enforcement.get("breach")
    state.enforcement = enf.Enforcement(
        str(enforcement.get("action") or "None"),
        breach if isinstance(breach, int) else 0,
        str(enforcement.get("reason") or ""),
        _time(enforcement.get("since")),
    )
    if "critical" in state.enforcement.reason:
        state.critical_breach = state.enforcement.breach
