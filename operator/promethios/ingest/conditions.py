"""The ingest API's conditions on a GovernedAgent (pure: the clock is passed in).

- ``HeartbeatFresh``: True (``HeartbeatReceived``) while the last heartbeat is younger
  than ``missedHeartbeatsBeforeStale x heartbeatIntervalSeconds``; False
  (``HeartbeatStale``) after that; Unknown (``AwaitingHeartbeat``) before the first one
  (False/``HeartbeatStale`` once the window has passed since the agent became known).
- ``PolicyCompliant``: False (``CriticalViolation``) while a breach raised by a critical
  violation is unacknowledged (``status.enforcement.criticalBreach``); else False
  (``TrustBelowThreshold``) while the server trust is below ``trustThreshold``; else True
  (``Compliant``).

``lastTransitionTime`` changes only when a condition's status changes. :func:`refresh`
also applies a pending acknowledgement (the release of Suspend/Quarantine), since both
depend only on the spec and the clock.
"""

from __future__ import annotations

from ..api import conditions as vocabulary
from ..api.conditions import transition_time
from . import enforcement as enf
from .records import ConditionState
from .state import AgentState


def refresh(state: AgentState, now: float) -> bool:
    """Re-evaluate enforcement release and the conditions; True if anything flipped."""
    released = enf.release(state.enforcement, state.config.acknowledged_breach)
    changed = released != state.enforcement
    state.enforcement = released
    changed |= _set(state, vocabulary.HEARTBEAT_FRESH, *heartbeat_condition(state, now), now)
    changed |= _set(state, vocabulary.POLICY_COMPLIANT, *compliance_condition(state, now), now)
    if changed:
        state.version += 1
    return changed


def heartbeat_condition(state: AgentState, now: float) -> tuple[str, str, str]:
    """(status, reason, message) of ``HeartbeatFresh``."""
    window = state.config.stale_after
    if state.stale(now):
        return "False", vocabulary.HEARTBEAT_STALE, f"no heartbeat for more than {window:g}s"
    if state.last_heartbeat is None:
        return "Unknown", vocabulary.AWAITING_HEARTBEAT, "no heartbeat received yet"
    return "True", vocabulary.HEARTBEAT_RECEIVED, f"last heartbeat within {window:g}s"


def compliance_condition(state: AgentState, now: float) -> tuple[str, str, str]:
    """(status, reason, message) of ``PolicyCompliant``."""
    config = state.config
    enforcement = state.enforcement
    if enforcement.critical_outstanding(config.acknowledged_breach):
        return (
            "False",
            vocabulary.CRITICAL_VIOLATION,
            f"critical violation in breach {enforcement.critical_breach}; acknowledge it in "
            "spec.governance.acknowledgedBreach",
        )
    trust = state.trust_score(now)
    threshold = config.governance.trust_threshold
    if trust < threshold:
        return (
            "False",
            vocabulary.TRUST_BELOW_THRESHOLD,
            f"trust {trust:.3f} < threshold {threshold:.3f}",
        )
    return "True", vocabulary.COMPLIANT, f"trust {trust:.3f} >= threshold {threshold:.3f}"


def _set(state: AgentState, ctype: str, status: str, reason: str, message: str, now: float) -> bool:
    """Set a condition; True when its status changed (only then does ``since`` move)."""
    current = state.conditions.get(ctype)
    previous_status, previous_since = (current.status, current.since) if current else (None, None)
    since = transition_time(previous_status, previous_since, status, now)
    updated = ConditionState(status, reason, message, since)
    if updated != current:  # else keep the old one: a new object each second per agent
        state.conditions[ctype] = updated  # would outlive the collector's young generations
    # Reason/message may be refined without a transition, but rounding noise in the
    # trust message must not count as a change worth a write.
    return status != previous_status
