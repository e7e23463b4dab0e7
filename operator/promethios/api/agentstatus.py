"""The status of a GovernedAgent: what the operator observed (conditions, replicas,
children, the API key's rotation) and what the ingest API writes back (heartbeat,
governance counters, trust, violation history, enforcement, budget usage).

Each part names its writer in its docstring; the CRD's status schema is generated from
:class:`GovernedAgentStatus`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from .budget import UsageStatus
from .common import (
    Conditions,
    Model,
    api_config,
)
from .egress import EgressStatus
from .enforcement import EnforcementAction
from .rollout import RevisionStatus


class HeartbeatState(StrEnum):
    """The agent's self-reported state; ``unknown`` until a heartbeat arrives."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"
    UNKNOWN = "unknown"


class HeartbeatStatus(Model):
    """What the last heartbeat said, written by the ingest API."""

    state: HeartbeatState = Field(HeartbeatState.UNKNOWN, description="Reported state.")
    last_heartbeat: datetime | None = Field(None, description="When the last heartbeat arrived.")
    uptime_seconds: float | None = Field(None, ge=0, description="Agent-reported uptime.")
    last_activity: datetime | None = Field(None, description="Agent-reported last activity.")


class ViolationCounts(Model):
    """Violations received since the agent was created, by severity."""

    low: int = Field(0, ge=0, description="Violations of severity low.")
    medium: int = Field(0, ge=0, description="Violations of severity medium.")
    high: int = Field(0, ge=0, description="Violations of severity high.")
    critical: int = Field(0, ge=0, description="Violations of severity critical.")
    total: int = Field(0, ge=0, description="All violations.")


#: ``status.governance.violationHistory`` counts violations in buckets of this many seconds.
HISTORY_BUCKET_SECONDS = 300


#: Buckets kept (24 hours); only buckets that counted a violation are stored.
HISTORY_BUCKETS = 288


class ViolationBucket(Model):
    """Violations recorded in one :data:`HISTORY_BUCKET_SECONDS` window, by severity."""

    start: datetime = Field(description="Start of the window (a multiple of 300 s, UTC).")
    low: int = Field(0, ge=0, description="Violations of severity low.")
    medium: int = Field(0, ge=0, description="Violations of severity medium.")
    high: int = Field(0, ge=0, description="Violations of severity high.")
    critical: int = Field(0, ge=0, description="Violations of severity critical.")


class RecentViolation(Model):
    """One recorded violation (the newest are kept, bounded)."""

    id: str = Field(max_length=128, description="Idempotency key or server-assigned id.")
    type: str = Field(max_length=128, description="Violation type, e.g. pii.email.")
    severity: str = Field(
        pattern=r"^(low|medium|high|critical)$", description="low, medium, high or critical."
    )
    description: str = Field("", max_length=1024, description="What happened (no content).")
    time: datetime = Field(description="When the ingest API recorded it.")


ViolationKey = Annotated[
    str,
    Field(
        min_length=12,
        max_length=12,
        pattern=r"^[A-Za-z0-9_-]{12}$",
        description="One replay marker (12 base64url characters).",
    ),
]


class GovernanceStatus(Model):
    """Governance data aggregated by the ingest API."""

    trust_score: float | None = Field(None, ge=0, le=1, description="Server-computed trust.")
    trust_score_display: str | None = Field(
        None,
        max_length=8,
        description="trustScore with two decimals, for kubectl's Trust column.",
    )
    reported_trust_score: float | None = Field(
        None, description="Trust score the agent reported (kept beside, not trusted)."
    )
    interactions: int = Field(0, ge=0, description="Model interactions reported.")
    response_time_ms: float | None = Field(None, ge=0, description="Last reported response time.")
    violations: ViolationCounts = Field(default_factory=ViolationCounts)
    recent_violations: list[RecentViolation] = Field(
        default_factory=list, max_length=20, description="The newest violations, newest first."
    )
    lost_violations: ViolationCounts = Field(
        default_factory=ViolationCounts,
        description=(
            "Violations the sidecar reported it had to drop (its spool full): they happened "
            "but are not in the counts above."
        ),
    )
    last_violation_time: datetime | None = Field(
        None, description="When the newest violation was recorded."
    )
    violation_history: list[ViolationBucket] = Field(
        default_factory=list,
        max_length=HISTORY_BUCKETS,
        description=(
            "Violations per 5-minute window over the last 24 hours, newest first (windows "
            "without violations are left out): every ingest replica adds its own into it, "
            "so time-range totals read from it are the same whichever replica recorded them."
        ),
    )
    recent_violation_keys: list[ViolationKey] = Field(
        default_factory=list,
        max_length=128,
        description=(
            "Replay-dedupe markers of the newest violations, newest first: base64url of the "
            "first 9 bytes of SHA-256 of each violation id (more than one sidecar batch)."
        ),
    )


class EnforcementStatus(Model):
    """The breach action in force, if any (written by the ingest API)."""

    action: EnforcementAction = Field(
        EnforcementAction.NONE, description="None, Suspended or Quarantined."
    )
    breach: int = Field(0, ge=0, description="Breach counter; acknowledge it to release.")
    critical_breach: int = Field(
        0,
        ge=0,
        description=(
            "The latest breach raised by a critical violation (0: none); PolicyCompliant "
            "stays False until it is acknowledged."
        ),
    )
    reason: str = Field("", max_length=1024, description="Why the latest breach happened.")
    since: datetime | None = Field(None, description="When the action took effect.")


class ChildNames(Model):
    """Names of the objects the operator created for this agent."""

    secret: str | None = Field(None, description="The API-key Secret.")
    config_map: str | None = Field(None, description="The sidecar's ConfigMap.")
    deployment: str | None = Field(None, description="The agent's Deployment.")
    service: str | None = Field(None, description="The agent's Service.")
    network_policy: str | None = Field(None, description="The quarantine NetworkPolicy.")


class ApiKeyStatus(Model):
    """Observed state of the ingest key (never the key itself)."""

    rotation: int = Field(0, ge=0, description="The spec.apiKey.rotation last applied.")
    previous_key_expires_at: datetime | None = Field(
        None, description="When the pre-rotation key stops being accepted."
    )


class GovernedAgentStatus(RevisionStatus):
    """Observed state of a GovernedAgent."""

    model_config = api_config(extra="allow")

    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation the operator last acted on."
    )
    conditions: Conditions
    replicas: int | None = Field(None, ge=0, description="Agent pods (the Deployment's).")
    ready_replicas: int | None = Field(None, ge=0, description="Agent pods ready.")
    children: ChildNames | None = Field(None, description="Objects the operator made.")
    governance_identity: str | None = Field(None, description="Stable for the resource's life.")
    api_key: ApiKeyStatus | None = None
    heartbeat: HeartbeatStatus | None = None
    governance: GovernanceStatus | None = None
    enforcement: EnforcementStatus | None = None
    usage: UsageStatus | None = Field(
        None, description="The agent's own budgets (scope Agent), written by the ingest API."
    )
    egress: EgressStatus | None = Field(None, description="Egress and placement in force.")
