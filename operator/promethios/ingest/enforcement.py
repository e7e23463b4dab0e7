"""Breach detection and the enforcement decision (pure).

A *breach* is either

- a newly recorded violation of severity ``critical``, or
- the server trust score crossing from at-or-above the agent's ``trustThreshold`` to
  below it (edge-triggered, so a released agent whose trust is still recovering is not
  re-suspended until it breaches again).

Every breach while no earlier breach is outstanding raises ``status.enforcement.breach``
to n+1; a breach is outstanding until the user sets ``spec.governance.acknowledgedBreach``
to that number. The action recorded depends on ``spec.governance.onBreach``: ``Suspend``
→ ``Suspended``, ``Quarantine`` → ``Quarantined``, ``Alert`` → ``None`` (alerts only).
The operator acts on the action (scale to zero, deny-all NetworkPolicy, revoke the key);
once acknowledged the action returns to ``None`` and the breach number stays.

With several ingest replicas, :func:`merge` combines a replica's enforcement with the
stored one: the higher breach number wins; on the same breach the stronger action wins
(``Quarantined`` > ``Suspended`` > ``None``), so an action another replica set is never
cleared by a replica that has not seen it; the only way down is :func:`release`, once the
breach is acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ACTIONS = {"Suspend": "Suspended", "Quarantine": "Quarantined", "Alert": "None"}
STRENGTH = {"None": 0, "Suspended": 1, "Quarantined": 2}


@dataclass(frozen=True, slots=True)
class Enforcement:
    """``status.enforcement``: the action in force and the breach counter."""

    action: str = "None"
    breach: int = 0
    reason: str = ""
    since: float | None = None

    def outstanding(self, acknowledged: int) -> bool:
        """True while the latest breach has not been acknowledged."""
        return self.breach > acknowledged


def breach_reason(
    new_severities: list[str], trust_before: float, trust_after: float, threshold: float
) -> str | None:
    """Why the latest change is a breach, or None if it is not one."""
    critical = sum(1 for severity in new_severities if severity == "critical")
    if critical:
        return f"{critical} critical violation(s) reported"
    if trust_before >= threshold > trust_after:
        return f"trust score {trust_after:.3f} fell below threshold {threshold:.3f}"
    return None


def decide(
    current: Enforcement, on_breach: str, acknowledged: int, reason: str | None, now: float
) -> Enforcement:
    """The enforcement after an event: released if acknowledged, raised on a new breach."""
    current = release(current, acknowledged)
    if reason is None or current.outstanding(acknowledged):
        return current
    return Enforcement(ACTIONS.get(on_breach, "None"), current.breach + 1, reason, now)


def release(current: Enforcement, acknowledged: int) -> Enforcement:
    """Clear the action once the user acknowledged the breach number."""
    if current.action != "None" and not current.outstanding(acknowledged):
        return replace(current, action="None", since=None)
    return current


def merge(local: Enforcement, stored: Enforcement, acknowledged: int) -> Enforcement:
    """One replica's enforcement merged with the stored one (see the module docstring)."""
    if stored.breach != local.breach:
        winner = stored if stored.breach > local.breach else local
    elif STRENGTH.get(stored.action, 0) > STRENGTH.get(local.action, 0):
        winner = stored
    else:
        winner = local
    return release(winner, acknowledged)
