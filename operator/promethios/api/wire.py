"""The ingest wire contract, exactly as the seed defines it, plus compatible extensions.

A client that sends exactly the seed's shapes works; the extensions are optional:
``idempotencyKey`` on every report, a batch ``violations`` list, ``timestamp`` on a
violation. Field names are the seed's camelCase; unknown fields are ignored so an
agent built against a newer contract is not refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .common import Severity

AGENT_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_CONTEXT_BYTES = 4096
MAX_BATCH = 100

HEADER_AGENT_ID = "X-Agent-ID"
HEADER_GOVERNANCE_ID = "X-Governance-ID"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"

PATH_HEARTBEAT = "/api/v1/agents/heartbeat"
PATH_METRICS = "/api/v1/governance/metrics"
PATH_VIOLATIONS = "/api/v1/governance/violations"
PATH_SUMMARY = "/api/v1/governance/summary"
PATH_ALLOWANCE = "/api/v1/budgets/allowance"
"""Budget leases (an extension: :mod:`promethios.api.allowance`)."""

#: Reported times must fall in this range (UTC): anything else is a client bug or an attack,
#: and some of it cannot even be represented once converted to UTC (year 0, year 10000).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def _in_range(moment: datetime) -> datetime:
    """A reported time in UTC (naive means UTC), within [2000-01-01, 2100-01-01)."""
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            "time out of range: must be within 2000-01-01 and 2100-01-01 UTC"
        ) from None
    if not EARLIEST_TIME <= utc < LATEST_TIME:
        raise ValueError("time out of range: must be within 2000-01-01 and 2100-01-01 UTC")
    return utc


WireTime = Annotated[datetime, AfterValidator(_in_range)]
AgentId = Annotated[str, Field(min_length=3, max_length=317, pattern=AGENT_ID_PATTERN)]
IdempotencyKey = Annotated[str, Field(pattern=IDEMPOTENCY_KEY_PATTERN)]


class WireModel(BaseModel):
    """Base of the wire models: seed field names, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)


class PolicyViolation(WireModel):
    """One breach of policy (the seed's ``PolicyViolation``)."""

    type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")
    severity: Severity
    description: str = Field("", max_length=1024)
    context: Any = None
    idempotency_key: IdempotencyKey | None = Field(None, alias="idempotencyKey")
    timestamp: WireTime | None = None

    @field_validator("context")
    @classmethod
    def _bounded_context(cls, value: Any) -> Any:
        size = len(json.dumps(value, default=str))
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(f"context is {size} bytes serialised; at most {MAX_CONTEXT_BYTES}")
        return value


class HeartbeatReport(WireModel):
    """``POST /api/v1/agents/heartbeat``."""

    agent_id: AgentId = Field(alias="agentId")
    status: Literal["active", "inactive", "error"]
    uptime: float = Field(ge=0, le=10**10, allow_inf_nan=False)
    last_activity: WireTime = Field(alias="lastActivity")
    idempotency_key: IdempotencyKey | None = Field(None, alias="idempotencyKey")


class GovernanceMetrics(WireModel):
    """The ``metrics`` object of a metrics report."""

    trust_score: float = Field(alias="trustScore", ge=0, le=100, allow_inf_nan=False)
    violations: list[PolicyViolation] = Field(default_factory=list, max_length=MAX_BATCH)
    interactions: int = Field(ge=0, le=10**12)
    response_time: float = Field(alias="responseTime", ge=0, le=10**7, allow_inf_nan=False)
    dropped_violations: int | None = Field(
        None,
        alias="droppedViolations",
        ge=0,
        le=10**9,
        description="Extension: violations the sidecar had to drop since its last report.",
    )
    dropped_violations_by_severity: dict[Severity, Annotated[int, Field(ge=0, le=10**9)]] | None = (
        Field(
            None,
            alias="droppedViolationsBySeverity",
            description="Extension: the same, by severity (without it, all count as low: "
            "the sidecar drops the least severe first).",
        )
    )


class MetricsReport(WireModel):
    """``POST /api/v1/governance/metrics``."""

    agent_id: AgentId = Field(alias="agentId")
    governance_identity: str = Field(alias="governanceIdentity", min_length=1, max_length=128)
    metrics: GovernanceMetrics
    timestamp: WireTime
    idempotency_key: IdempotencyKey | None = Field(None, alias="idempotencyKey")


class ViolationReport(WireModel):
    """``POST /api/v1/governance/violations``: one ``violation`` or a batch ``violations``."""

    agent_id: AgentId = Field(alias="agentId")
    violation: PolicyViolation | None = None
    violations: list[PolicyViolation] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    idempotency_key: IdempotencyKey | None = Field(None, alias="idempotencyKey")

    @model_validator(mode="after")
    def _one_or_batch(self) -> ViolationReport:
        if (self.violation is None) == (self.violations is None):
            raise ValueError("exactly one of violation or violations is required")
        return self

    def all_violations(self) -> list[PolicyViolation]:
        """The reported violations as a list, whichever form was sent."""
        return [self.violation] if self.violation is not None else list(self.violations or [])


class TerminationSummary(WireModel):
    """What a stopping sidecar leaves in its container's termination message.

    Counts and times only, never a violation's content. The kubelet keeps at
    most 4 KiB of a termination message; this stays far below.
    """

    undelivered_violations: int = Field(
        alias="undeliveredViolations", ge=0, description="Violations still in the spool."
    )
    undelivered_by_severity: dict[Severity, int] = Field(
        default_factory=dict, alias="undeliveredBySeverity"
    )
    oldest_undelivered: datetime | None = Field(
        None, alias="oldestUndelivered", description="When the oldest of them was found."
    )
    dropped_violations: int = Field(
        0,
        alias="droppedViolations",
        ge=0,
        description="Violations the full spool dropped whose count the ingest has not confirmed.",
    )
    dropped_by_severity: dict[Severity, int] = Field(
        default_factory=dict, alias="droppedViolationsBySeverity"
    )


class ErrorBody(BaseModel):
    """Every error response: a code, a message, and the offending fields if any."""

    error: str
    message: str
    fields: list[dict[str, str]] = Field(default_factory=list)


class Accepted(BaseModel):
    """A 2xx response to a report."""

    accepted: int = Field(description="Reports newly recorded.")
    duplicates: int = Field(0, description="Reports already recorded under the same key.")
