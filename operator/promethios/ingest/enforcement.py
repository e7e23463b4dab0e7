"""Breach detection and the enforcement decision (pure).

A *breach* is either

- a newly recorded violation of severity ``critical``, or
- the server trust score crossing from at-or-above the agent's ``trustThreshold`` to
  below it (edge-triggered, so a released agent whose trust is still recovering is not
  re-suspended until it breaches again).

Every breach while no earlier breach is outstanding raises ``status.enforcement.breach``
to n+1; a breach is outstanding until the user sets ``spec.governance.acknowledgedBreach``
to that number. The action recorded is :attr:`BreachAction.enforced` of
``spec.governance.onBreach``: ``Suspend`` → ``Suspended``, ``Quarantine`` → ``Quarantined``,
``Alert`` → ``None`` (alerts only). The operator acts on the action (scale to zero,
deny-all NetworkPolicy, revoke the key); once acknowledged the action returns to ``None``
and the breach number stays.

``criticalBreach`` records the latest breach number that a critical violation raised (or
that was outstanding when one arrived): ``PolicyCompliant`` stays False with reason
``CriticalViolation`` until it is acknowledged. It is a field of its own, never recovered
from the free-text reason.

With several ingest replicas, :func:`merge` combines a replica's enforcement with the
stored one: the higher breach number wins; on the same breach the stronger action wins
(``Quarantined`` > ``Suspended`` > ``None``), so an action another replica set is never
cleared by a replica that has not seen it; the only way down is :func:`release`, once the
breach is acknowledged. ``criticalBreach`` takes the larger of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..api.common import Severity
from ..api.enforcement import BreachAction, EnforcementAction


@dataclass(frozen=True, slots=True)
class EnforcementState:
    """``status.enforcement`` as the ingest API keeps it: action, breach counters, reason."""

    action: EnforcementAction = EnforcementAction.NONE
    breach: int = 0
    reason: str = ""
    since: float | None = None
    critical_breach: int = 0

    def outstanding(self, acknowledged: int) -> bool:
        """True while the latest breach has not been acknowledged."""
        return self.breach > acknowledged

    def critical_outstanding(self, acknowledged: int) -> bool:
        """True while a breach raised by a critical violation is unacknowledged."""
        return self.critical_breach > acknowledged


def breach_reason(
    new_severities: list[str], trust_before: float, trust_after: float, threshold: float
) -> str | None:
    """Why the latest change is a breach, or None if it is not one."""
    critical = sum(1 for severity in new_severities if severity == Severity.CRITICAL)
    if critical:
        return f"{critical} critical violation(s) reported"
    if trust_before >= threshold > trust_after:
        return f"trust score {trust_after:.3f} fell below threshold {threshold:.3f}"
    return None


def decide(
    current: EnforcementState,
    on_breach: BreachAction,
    acknowledged: int,
    reason: str | None,
    now: float,
    critical: bool = False,
) -> EnforcementState:
    """The enforcement after an event: released if acknowledged, raised on a new breach.

    ``critical``: the event recorded a critical violation, which marks the breach it raised
    (or the one still outstanding) as critical.
    """
    current = release(current, acknowledged)
    if reason is None:
        return current
    if current.outstanding(acknowledged):
        if critical:
            return replace(current, critical_breach=max(current.critical_breach, current.breach))
        return current
    breach = current.breach + 1
    return EnforcementState(
        on_breach.enforced,
        breach,
        reason,
        now,
        breach if critical else current.critical_breach,
    )


def release(current: EnforcementState, acknowledged: int) -> EnforcementState:
    """Clear the action once the user acknowledged the breach number."""
    if current.action != EnforcementAction.NONE and not current.outstanding(acknowledged):
        return replace(current, action=EnforcementAction.NONE, since=None)
    return current


def merge(local: EnforcementState, stored: EnforcementState, acknowledged: int) -> EnforcementState:
    """One replica's enforcement merged with the stored one (see the module docstring)."""
    if stored.breach != local.breach:
        winner = stored if stored.breach > local.breach else local
    elif stored.action.strength > local.action.strength:
        winner = stored
    else:
        winner = local
    critical = max(local.critical_breach, stored.critical_breach)
    return release(replace(winner, critical_breach=critical), acknowledged)
