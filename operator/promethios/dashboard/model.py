"""Immutable rows the pages render, parsed once per watch event (pure).

A GovernedAgent, GovernancePolicy or AlertSink body becomes an :class:`AgentRow`,
:class:`PolicyRow` or :class:`SinkRow` when the watch delivers it, so a page request only
filters, sorts and renders. Status sections are read through the API models
(:func:`~promethios.api.common.parse_or_default`): a section that does not validate reads as
its default and never hides the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.agentstatus import EnforcementStatus, GovernanceStatus, HeartbeatStatus
from ..api.alertsink import AlertSinkStatus
from ..api.common import SEVERITIES, parse_or_default
from ..api.conditions import (
    HEARTBEAT_FRESH,
    POLICY_COMPLIANT,
    READY,
    parse_time,
)
from ..api.policy import GovernancePolicyStatus
from ..ingest import history

#: Masks anything in a violation description that looks like personal data or a secret:
#: the sidecar writes descriptions without content, this is a second line of defence.
_SENSITIVE = re.compile(
    r"[\w.+-]+@[\w-]+(\.[\w-]+)+"  # e-mail addresses
    r"|\b(sk|pk|rk|xox[abpr]|ghp|AKIA)[-_A-Za-z0-9]{8,}"  # key-shaped tokens
    r"|\b[A-Za-z0-9_-]{32,}\b"  # long opaque strings
    r"|\b\d[\d -]{7,}\d\b"  # long digit runs (cards, phone numbers, ids)
)


def mask(text: str) -> str:
    """``text`` with anything key- or PII-shaped replaced by ``[hidden]``."""
    return _SENSITIVE.sub("[hidden]", text)


@dataclass(frozen=True)
class ConditionRow:
    """One condition as shown."""

    type: str
    status: str
    reason: str
    message: str
    since: float | None


@dataclass(frozen=True)
class ViolationRow:
    """One recent violation as shown (no id, description masked)."""

    type: str
    severity: str
    description: str
    time: float | None


@dataclass(frozen=True)
class AgentRow:
    """Everything the pages show of one GovernedAgent."""

    namespace: str
    name: str
    uid: str
    mode: str
    provider: str
    policy: str
    on_breach: str
    trust_threshold: float
    suspend: bool
    acknowledged_breach: int
    alert_sinks: tuple[str, ...]
    heartbeat_interval: int
    stale_after: float
    ready: ConditionRow | None
    heartbeat_fresh: ConditionRow | None
    policy_compliant: ConditionRow | None
    conditions: tuple[ConditionRow, ...]
    trust: float | None
    heartbeat_state: str
    last_heartbeat: float | None
    totals: Mapping[str, int]
    lost_total: int
    buckets: Mapping[int, Mapping[str, int]]
    recent: tuple[ViolationRow, ...]
    enforcement: str
    breach: int
    enforcement_reason: str
    enforcement_since: float | None
    replicas: int | None
    ready_replicas: int | None
    children: Mapping[str, str]
    created: float | None
    #: The stored spec, for the integration instructions (:mod:`promethios.deploy`).
    spec: Mapping[str, Any] = field(default_factory=dict)
    #: The running revision (``status.rollout.revision``), if recorded.
    revision: int | None = None

    @property
    def key(self) -> str:
        """``namespace/name`` (the agentId)."""
        return f"{self.namespace}/{self.name}"

    @property
    def is_ready(self) -> bool:
        """The operator's Ready condition is True."""
        return self.ready is not None and self.ready.status == "True"

    @property
    def enforced(self) -> bool:
        """A breach action (Suspended, Quarantined) is in force."""
        return self.enforcement not in ("", "None")

    @property
    def unacknowledged(self) -> bool:
        """A breach the spec has not acknowledged yet (what the acknowledge button sets)."""
        return self.breach > self.acknowledged_breach

    def stale(self, now: float) -> bool:
        """No heartbeat within the agent's stale window (or never one)."""
        if self.heartbeat_fresh is not None:
            return self.heartbeat_fresh.status != "True"
        return self.last_heartbeat is None or now - self.last_heartbeat > self.stale_after


def _conditions(raw: Any) -> tuple[ConditionRow, ...]:
    rows = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Mapping) and item.get("type"):
            since = parse_time(item.get("lastTransitionTime"))
            rows.append(
                ConditionRow(
                    str(item["type"]),
                    str(item.get("status") or "Unknown"),
                    str(item.get("reason") or ""),
                    str(item.get("message") or "")[:1024],
                    since.timestamp() if since else None,
                )
            )
    return tuple(rows)


def _names(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object; ValueError when either is missing."""
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not namespace or not isinstance(name, str) or not name:
        raise ValueError("metadata.namespace and metadata.name are required")
    return namespace, name


def _find(conditions: tuple[ConditionRow, ...], ctype: str) -> ConditionRow | None:
    return next((c for c in conditions if c.type == ctype), None)


def _number(value: Any, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def agent_row(obj: Mapping[str, Any]) -> AgentRow:
    """The row of a GovernedAgent body (a watch event's object); ValueError if unnamed."""
    namespace, name = _names(obj)
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    governance_spec = spec.get("governance") or {}
    governance = parse_or_default(GovernanceStatus, status.get("governance"))
    heartbeat = parse_or_default(HeartbeatStatus, status.get("heartbeat"))
    enforcement = parse_or_default(EnforcementStatus, status.get("enforcement"))
    conditions = _conditions(status.get("conditions"))
    interval = int(_number(governance_spec.get("heartbeatIntervalSeconds"), 30))
    missed = int(_number(governance_spec.get("missedHeartbeatsBeforeStale"), 3))
    created = parse_time(metadata.get("creationTimestamp"))
    return AgentRow(
        namespace=namespace,
        name=name,
        uid=str(metadata.get("uid") or ""),
        mode=str(governance_spec.get("mode") or "enforce"),
        provider=str((spec.get("modelProvider") or {}).get("type") or "openai"),
        policy=str((governance_spec.get("policyRef") or {}).get("name") or ""),
        on_breach=str(governance_spec.get("onBreach") or "Alert"),
        trust_threshold=_number(governance_spec.get("trustThreshold"), 0.7),
        suspend=spec.get("suspend") is True,
        acknowledged_breach=int(_number(governance_spec.get("acknowledgedBreach"), 0)),
        alert_sinks=tuple(
            str(ref.get("name")) for ref in spec.get("alertSinks") or [] if ref.get("name")
        ),
        heartbeat_interval=interval,
        stale_after=float(interval * missed),
        ready=_find(conditions, READY),
        heartbeat_fresh=_find(conditions, HEARTBEAT_FRESH),
        policy_compliant=_find(conditions, POLICY_COMPLIANT),
        conditions=conditions,
        trust=governance.trust_score,
        heartbeat_state=str(heartbeat.state),
        last_heartbeat=heartbeat.last_heartbeat.timestamp() if heartbeat.last_heartbeat else None,
        totals={s: getattr(governance.violations, s) for s in SEVERITIES},
        lost_total=governance.lost_violations.total,
        buckets=history.decode(governance.violation_history),
        recent=tuple(
            ViolationRow(
                v.type, v.severity, mask(v.description), v.time.timestamp() if v.time else None
            )
            for v in governance.recent_violations
        ),
        enforcement=str(enforcement.action),
        breach=enforcement.breach,
        enforcement_reason=mask(enforcement.reason),
        enforcement_since=enforcement.since.timestamp() if enforcement.since else None,
        replicas=status.get("replicas") if isinstance(status.get("replicas"), int) else None,
        ready_replicas=(
            status.get("readyReplicas") if isinstance(status.get("readyReplicas"), int) else None
        ),
        children={
            str(kind): str(name)
            for kind, name in (status.get("children") or {}).items()
            if isinstance(name, str)
        },
        created=created.timestamp() if created else None,
        spec=dict(spec),
        revision=(status.get("rollout") or {}).get("revision"),
    )


@dataclass(frozen=True)
class PolicyRow:
    """A GovernancePolicy as shown: what it enforces, in a line each."""

    namespace: str
    name: str
    ready: ConditionRow | None
    summary: tuple[str, ...] = field(default_factory=tuple)
    #: The stored spec, for the integration instructions (:mod:`promethios.deploy`).
    spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


def policy_row(obj: Mapping[str, Any]) -> PolicyRow:
    """The row of a GovernancePolicy body."""
    namespace, name = _names(obj)
    spec = obj.get("spec") or {}
    status = parse_or_default(GovernancePolicyStatus, obj.get("status"))
    lines = []
    patterns = spec.get("blockedPatterns") or []
    if patterns:
        names = ", ".join(str(p.get("name")) for p in patterns[:8])
        lines.append(f"{len(patterns)} blocked pattern(s): {names}")
    pii = spec.get("piiDetection") or {}
    if pii.get("enabled", True):
        lines.append(f"PII: {pii.get('action', 'redact')} ({', '.join(pii.get('types') or [])})")
    if spec.get("allowedModels"):
        lines.append("models: " + ", ".join(str(m) for m in spec["allowedModels"][:8]))
    limits = spec.get("rateLimits") or {}
    if limits.get("requestsPerMinute") or limits.get("tokensPerMinute"):
        lines.append(
            f"rate: {limits.get('requestsPerMinute') or '-'} req/min, "
            f"{limits.get('tokensPerMinute') or '-'} tokens/min"
        )
    budget = spec.get("budget") or {}
    if budget.get("tokens"):
        lines.append(f"budget: {budget['tokens']} tokens / {budget.get('windowSeconds', 86400)} s")
    conditions = _conditions([c.model_dump(by_alias=True, mode="json") for c in status.conditions])
    return PolicyRow(
        namespace=namespace,
        name=name,
        ready=_find(conditions, READY),
        summary=tuple(lines),
        spec=dict(spec),
    )


@dataclass(frozen=True)
class SinkRow:
    """An AlertSink as shown: where (the type only, never the URL), deliveries, Ready."""

    namespace: str
    name: str
    type: str
    min_severity: str
    delivered: int
    failed: int
    last_error: str
    last_delivery: float | None
    last_failure: float | None
    ready: ConditionRow | None

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


def sink_row(obj: Mapping[str, Any]) -> SinkRow:
    """The row of an AlertSink body (its URL and Secrets are never read or shown)."""
    namespace, name = _names(obj)
    spec = obj.get("spec") or {}
    status = parse_or_default(AlertSinkStatus, obj.get("status"))
    conditions = _conditions([c.model_dump(by_alias=True, mode="json") for c in status.conditions])
    return SinkRow(
        namespace=namespace,
        name=name,
        type=str(spec.get("type") or ""),
        min_severity=str(spec.get("minSeverity") or "high"),
        delivered=status.delivered,
        failed=status.failed,
        last_error=status.last_error,
        last_delivery=status.last_delivery_time.timestamp() if status.last_delivery_time else None,
        last_failure=status.last_failure_time.timestamp() if status.last_failure_time else None,
        ready=_find(conditions, READY),
    )
