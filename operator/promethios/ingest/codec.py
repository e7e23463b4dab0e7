"""The one codec between the ingest state and the ingest-owned part of a GovernedAgent's status.

:func:`encode_status` renders what a server-side apply by the ingest API (field manager
``promethios-ingest``) carries: ``heartbeat``, ``governance``, ``enforcement`` and the
``HeartbeatFresh`` / ``PolicyCompliant`` conditions. :func:`decode_status` reads a stored
status back through the same pydantic models the CRD is generated from, into typed,
structured values (:class:`StoredStatus`); loading after a restart and the replica merge
both use it, so neither parses the status its own way and no meaning is recovered from
message text.

Decoding is section by section: a section that does not validate (or a time that cannot
be represented, e.g. year 1 at +14:00) reads as its default and is logged, and never
stops the other sections — or any later write — from being read.

Encoding conforms: before a body leaves, it is validated against the status model (the
CRD schema is generated from it) and whatever the API server would refuse — a non-finite
number, a time it cannot hold, a value out of bounds — is dropped and logged by path (never
by value). One bad value therefore costs that value, never the write: a report that got
past the wire validation can never block later reports (the heartbeat-poison escape).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from ..api.agentstatus import (
    EnforcementStatus,
    GovernanceStatus,
    GovernedAgentStatus,
    HeartbeatStatus,
)
from ..api.common import SEVERITIES, Condition, parse_or_default
from ..api.conditions import INGEST_TYPES, format_time
from ..api.enforcement import EnforcementAction
from . import history
from .enforcement import EnforcementState
from .records import ConditionState, Recorded
from .state import VIOLATION_KEYS, AgentState

log = logging.getLogger(__name__)


def epoch(moment: datetime | None) -> float | None:
    """Epoch seconds of an aware or naive-UTC datetime; None when absent or out of range."""
    if moment is None:
        return None
    try:
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return aware.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def rfc3339(seconds: float | None) -> str | None:
    """``2024-01-02T03:04:05Z`` (seconds precision, what metav1.Time stores); None if absent
    or not representable (out of datetime's range, not finite)."""
    if seconds is None:
        return None
    try:
        # Whole seconds as datetime would round them (to the microsecond, then truncated).
        return _whole_second(math.floor(round(seconds, 6)))
    except (OverflowError, ValueError, OSError):
        return None


@functools.lru_cache(maxsize=4096)
def _whole_second(seconds: int) -> str:
    """:func:`rfc3339` of a whole second, remembered: a fleet's heartbeats of the last
    minutes fall on a few hundred distinct seconds, and formatting is the costly part."""
    return format_time(datetime.fromtimestamp(seconds, UTC))


@dataclass(frozen=True)
class StoredStatus:
    """The ingest-owned fields of a stored status, typed (times as epoch seconds)."""

    heartbeat_state: str = "unknown"
    last_heartbeat: float | None = None
    uptime: float | None = None
    last_activity: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    lost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    interactions: int = 0
    response_time_ms: float | None = None
    reported_trust: float | None = None
    trust_score: float | None = None
    last_violation_time: float | None = None
    recent: tuple[Recorded, ...] = ()
    """Newest first."""
    keys: tuple[str, ...] = ()
    """Replay markers, newest first."""
    buckets: history.Buckets = field(default_factory=dict)
    """``violationHistory``: violations per time bucket."""
    enforcement: EnforcementState = field(default_factory=EnforcementState)
    conditions: dict[str, ConditionState] = field(default_factory=dict)
    """The ingest's conditions only."""


def decode_status(status: Mapping[str, Any], now: float) -> StoredStatus:
    """The typed ingest-owned fields of ``status`` (see the module docstring)."""
    heartbeat = parse_or_default(HeartbeatStatus, status.get("heartbeat"))
    governance = parse_or_default(GovernanceStatus, status.get("governance"))
    enforcement = parse_or_default(EnforcementStatus, status.get("enforcement"))
    counts = governance.violations
    return StoredStatus(
        heartbeat_state=str(heartbeat.state),
        last_heartbeat=epoch(heartbeat.last_heartbeat),
        uptime=heartbeat.uptime_seconds,
        last_activity=epoch(heartbeat.last_activity),
        counts={severity: getattr(counts, severity) for severity in SEVERITIES},
        lost={severity: getattr(governance.lost_violations, severity) for severity in SEVERITIES},
        interactions=governance.interactions,
        response_time_ms=governance.response_time_ms,
        reported_trust=governance.reported_trust_score,
        trust_score=governance.trust_score,
        last_violation_time=epoch(governance.last_violation_time),
        recent=tuple(
            Recorded(item.id, item.type, item.severity, item.description, epoch(item.time) or now)
            for item in governance.recent_violations
        ),
        keys=tuple(governance.recent_violation_keys[:VIOLATION_KEYS]),
        buckets=history.decode(governance.violation_history),
        enforcement=EnforcementState(
            EnforcementAction(enforcement.action),
            enforcement.breach,
            enforcement.reason,
            epoch(enforcement.since),
            enforcement.critical_breach,
        ),
        conditions=_conditions(status.get("conditions"), now),
    )


def _conditions(raw: Any, now: float) -> dict[str, ConditionState]:
    found: dict[str, ConditionState] = {}
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping) or item.get("type") not in INGEST_TYPES:
            continue
        try:
            condition = Condition.model_validate(item)
        except pydantic.ValidationError:
            log.warning("stored condition %s does not validate; re-evaluated", item.get("type"))
            continue
        since = epoch(condition.last_transition_time) or now
        found[condition.type] = ConditionState(
            condition.status, condition.reason, condition.message, since
        )
    return found


def encode_status(state: AgentState, now: float) -> dict[str, Any]:
    """The ingest-owned part of ``status`` for a server-side apply (conformed: see above)."""
    body, dropped = conform(_render(state, now))
    if dropped:
        log.warning(
            "status of %s: dropped values the API server would refuse: %s",
            state.config.agent_id,
            ", ".join(dropped),
        )
    return body


def _render(state: AgentState, now: float) -> dict[str, Any]:
    enforcement = state.enforcement
    trust = state.trust_score(now)
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
                "trustScore": trust,
                "trustScoreDisplay": f"{trust:.2f}",
                "reportedTrustScore": state.reported_trust,
                "interactions": state.interactions,
                "responseTimeMs": state.response_time_ms,
                "violations": {**state.counts, "total": sum(state.counts.values())},
                "lostViolations": {**state.lost, "total": sum(state.lost.values())},
                "recentViolations": [_recent(item) for item in state.recent],
                "lastViolationTime": rfc3339(state.last_violation_time),
                "violationHistory": history.encode(state.buckets, now),
                "recentViolationKeys": list(state.keys),
            }
        ),
        "enforcement": _drop_none(
            {
                "action": str(enforcement.action),
                "breach": enforcement.breach,
                "criticalBreach": enforcement.critical_breach,
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


#: Conforming stops after this many rounds (each drops every value one validation names).
CONFORM_ROUNDS = 8


def conform(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``body`` without what the status schema refuses, and the dropped paths."""
    dropped: list[str] = []
    body = _finite(body, "", dropped)
    for _ in range(CONFORM_ROUNDS):
        try:
            GovernedAgentStatus.model_validate_json(json.dumps(body, allow_nan=False))
            return body, dropped
        except pydantic.ValidationError as error:
            for location in sorted({err["loc"] for err in error.errors()}, key=len, reverse=True):
                # A value that is wrong goes; a required value that is missing takes the
                # object holding it along (e.g. one recent violation, not the whole list).
                for cut in (location, location[:-1]):
                    if cut and _remove(body, cut):
                        dropped.append(".".join(str(part) for part in cut))
                        break
    return {}, [*dropped, "<everything: the body never validated>"]


def _finite(node: Any, path: str, dropped: list[str]) -> Any:
    """``node`` without non-finite floats (JSON has no NaN or Infinity)."""
    if isinstance(node, dict):
        kept = {}
        for key, value in node.items():
            if isinstance(value, float) and not math.isfinite(value):
                dropped.append(f"{path}{key}")
                continue
            kept[key] = _finite(value, f"{path}{key}.", dropped)
        return kept
    if isinstance(node, list):
        return [
            _finite(item, f"{path}{index}.", dropped)
            for index, item in enumerate(node)
            if not (isinstance(item, float) and not math.isfinite(item))
        ]
    return node


def _remove(body: Any, location: tuple[int | str, ...]) -> bool:
    """Delete the value at ``location`` (a model's error location, by alias); True if found."""
    node = body
    for part in location[:-1]:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            return False
    last = location[-1]
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        del node[last]
        return True
    return False


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


def fingerprint(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ingest-owned values that tell whose write a status is (see :func:`.merge.foreign`).

    Read from the raw status on purpose: it is compared on every watch event, and two
    statuses with equal fingerprints are the same write whatever their other fields.
    """
    governance = status.get("governance") or {}
    enforcement = status.get("enforcement") or {}
    heartbeat = status.get("heartbeat") or {}
    counts = governance.get("violations") or {}
    lost = governance.get("lostViolations") or {}
    return (
        tuple(counts.get(severity, 0) for severity in SEVERITIES),
        tuple(lost.get(severity, 0) for severity in SEVERITIES),
        tuple(str(item.get("id")) for item in governance.get("recentViolations") or []),
        tuple(governance.get("recentViolationKeys") or ()),
        governance.get("trustScore"),
        governance.get("interactions", 0),
        enforcement.get("action", "None"),
        enforcement.get("breach", 0),
        heartbeat.get("state"),
        heartbeat.get("lastHeartbeat"),
    )
