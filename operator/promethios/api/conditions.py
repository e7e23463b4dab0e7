"""Conditions on a GovernedAgent: their types, reasons and conventions (standard library only).

Two writers share ``status.conditions`` (a list-map keyed by ``type``), each applying only
its own types: the operator owns ``Ready``, ``Progressing`` and ``Degraded``; the ingest
API owns ``HeartbeatFresh`` and ``PolicyCompliant``. Reasons are CamelCase and stable:
tools and alerts match on them.

Conventions both apply:

- the transition rule: a condition's ``lastTransitionTime`` moves only when its
  ``status`` changes (a new reason or message alone is not a transition);
- ``metav1.Time``: RFC 3339 in UTC, second precision, ``Z`` suffix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")

# -- types ----------------------------------------------------------------------------------
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
#: The operator's condition types, in the order it writes them.
OPERATOR_TYPES = (READY, PROGRESSING, DEGRADED)
HEARTBEAT_FRESH = "HeartbeatFresh"
POLICY_COMPLIANT = "PolicyCompliant"
#: The ingest API's condition types.
INGEST_TYPES = (HEARTBEAT_FRESH, POLICY_COMPLIANT)

# -- the operator's reasons -----------------------------------------------------------------
POLICY_NOT_FOUND = "PolicyNotFound"
PROVIDER_SECRET_NOT_FOUND = "ProviderSecretNotFound"
ALERT_SINK_NOT_FOUND = "AlertSinkNotFound"
#: ``spec.sidecar.image`` is neither the operator's sidecar image nor on its allowlist
#: (``--allowed-sidecar-image``): no workload is created or changed.
SIDECAR_IMAGE_NOT_ALLOWED = "SidecarImageNotAllowed"
SUSPENDED = "Suspended"
ENFORCEMENT_SUSPENDED = "EnforcementSuspended"
QUARANTINED = "Quarantined"
AVAILABLE = "AgentAvailable"
SCALED_TO_ZERO = "ScaledToZero"
PODS_NOT_READY = "PodsNotReady"
ROLLING_OUT = "RollingOut"
ROLLOUT_COMPLETE = "RolloutComplete"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
AS_EXPECTED = "AsExpected"
INVALID_NAME = "InvalidName"
#: ``spec.runtime: External``: the key and governance config are issued, no workload is run.
EXTERNAL_RUNTIME = "ExternalRuntime"
#: ``spec.rollout.rollbackOnBreach`` restored the previous revision (Degraded until the spec
#: changes).
ROLLED_BACK = "RolledBack"

# -- the ingest API's reasons ---------------------------------------------------------------
HEARTBEAT_RECEIVED = "HeartbeatReceived"
HEARTBEAT_STALE = "HeartbeatStale"
AWAITING_HEARTBEAT = "AwaitingHeartbeat"
CRITICAL_VIOLATION = "CriticalViolation"
TRUST_BELOW_THRESHOLD = "TrustBelowThreshold"
COMPLIANT = "Compliant"

# -- AlertSinks (status written by the ingest API, which delivers) ---------------------------
#: ``Ready`` of an AlertSink: the latest delivery's outcome, across every ingest replica.
DELIVERED = "Delivered"
DELIVERY_FAILED = "DeliveryFailed"
REFUSED_BY_POLICY = "RefusedByDestinationPolicy"

# -- GovernancePolicies (status written by the operator, which renders them) -----------------
#: ``Ready`` of a GovernancePolicy: whether the sidecar can enforce the spec as written.
VALID = "Valid"
INVALID_SPEC = "InvalidSpec"


def transition_time(previous_status: object, previous_time: T | None, status: str, now: T) -> T:
    """The ``lastTransitionTime`` of a condition set to ``status`` at ``now``.

    The previous time is kept when the status is unchanged and a time was recorded;
    otherwise (a new condition, a status change) the transition happens ``now``.
    """
    if previous_status == status and previous_time is not None:
        return previous_time
    return now


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with second precision, as metav1.Time serialises."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """The moment an RFC 3339 string names (naive means UTC); None when absent or unparsable."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
