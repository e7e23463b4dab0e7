"""Everything the ingest API knows about one agent, and the stored object it was last told of.

:class:`AgentState` is the in-memory view one replica renders into the agent's status
(:mod:`.codec`); :class:`StoredAgent` is the GovernedAgent as the API server last returned
it (a watch event or a GET), which several replicas merge onto (:mod:`.merge`). All state
is bounded: recent violations, replay markers, history and per-type counts have caps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..api.common import SEVERITIES
from ..api.conditions import parse_time
from ..api.metadata import INGEST_FIELD_MANAGER
from .agents import AgentConfig
from .enforcement import EnforcementState
from .history import Buckets
from .pending import Pending
from .records import ConditionState, Recorded
from .trust import TrustDebt

RECENT_VIOLATIONS = 20
VIOLATION_KEYS = 128
"""Replay markers kept in ``status.governance.recentViolationKeys`` (> the sidecar's batch)."""
MAX_TYPES_PER_AGENT = 100


@dataclass(frozen=True)
class StoredAgent:
    """The latest GovernedAgent this replica knows from the API server (watch or GET)."""

    resource_version: str
    status: dict[str, Any]
    acknowledged: int = 0
    """``spec.governance.acknowledgedBreach`` of the same object."""
    written_at: float | None = None
    """When ingest last changed the status (its managedFields entry), for trust recovery."""
    created_at: float | None = None
    """``metadata.creationTimestamp``: where the stale window of an agent that never sent a
    heartbeat starts, also for a replica that (re)started after it."""


def stored_agent(obj: dict[str, Any]) -> StoredAgent:
    """The :class:`StoredAgent` view of a GovernedAgent body."""
    metadata = obj.get("metadata") or {}
    governance = (obj.get("spec") or {}).get("governance") or {}
    ack = governance.get("acknowledgedBreach")
    written_at = None
    created = metadata.get("creationTimestamp")
    moment = parse_time(created) if isinstance(created, str) else None
    created_at = moment.timestamp() if moment is not None else None
    for entry in metadata.get("managedFields") or []:
        if entry.get("manager") == INGEST_FIELD_MANAGER and entry.get("subresource") == "status":
            moment = parse_time(entry.get("time")) if isinstance(entry.get("time"), str) else None
            written_at = moment.timestamp() if moment is not None else None
    return StoredAgent(
        str(metadata.get("resourceVersion") or ""),
        obj.get("status") or {},
        ack if isinstance(ack, int) else 0,
        written_at,
        created_at,
    )


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(SEVERITIES, 0)


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
    counts: dict[str, int] = field(default_factory=_zero_counts)
    lost: dict[str, int] = field(default_factory=_zero_counts)
    """Violations the sidecar reported dropping, by severity (``lostViolations``)."""
    by_type: dict[str, int] = field(default_factory=dict)
    recent: deque[Recorded] = field(default_factory=lambda: deque(maxlen=RECENT_VIOLATIONS))
    last_violation_time: float | None = None
    trust: TrustDebt = field(default_factory=TrustDebt)
    enforcement: EnforcementState = field(default_factory=EnforcementState)
    conditions: dict[str, ConditionState] = field(default_factory=dict)
    history: deque[tuple[float, str, str]] = field(default_factory=deque)
    """(time, severity, type) of recent violations: per-type counts of the summary's ranges
    (this replica's only; the severities come from :attr:`buckets`)."""
    buckets: Buckets = field(default_factory=dict)
    """Violations per time bucket, every replica's (``status.governance.violationHistory``)."""
    version: int = 0
    """Bumped by every change worth a status write."""
    heartbeat_version: int = 0
    """Bumped when only heartbeat timestamps moved (written less often)."""
    keys: deque[str] = field(default_factory=lambda: deque(maxlen=VIOLATION_KEYS))
    pending: Pending = field(default_factory=Pending)
    stored: StoredAgent | None = None
    written: tuple[Any, ...] | None = None
    """Fingerprint of this replica's last successful write (see :func:`.codec.fingerprint`)."""
    writing: bool = False

    def trust_score(self, now: float) -> float:
        """Server trust at ``now``."""
        return self.trust.score(now, self.config.scoring.recovery_per_hour)

    def stale(self, now: float) -> bool:
        """No heartbeat within the stale window (counting from when the agent was known)."""
        reference = self.last_heartbeat if self.last_heartbeat is not None else self.known_since
        return now - reference > self.config.stale_after
