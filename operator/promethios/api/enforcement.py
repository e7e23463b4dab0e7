"""The enforcement vocabulary: what a breach may trigger and what status records.

``spec.governance.onBreach`` names a :class:`BreachAction`; the ingest API records the
resulting :class:`EnforcementAction` in ``status.enforcement.action`` and the operator
acts on it (scale to zero, deny traffic, revoke the key). Both sides use these values
only (standard library only).
"""

from __future__ import annotations

from enum import StrEnum


class BreachAction(StrEnum):
    """What the user asks for when the agent breaches its policy (``spec.governance.onBreach``)."""

    ALERT = "Alert"
    SUSPEND = "Suspend"
    QUARANTINE = "Quarantine"

    @property
    def enforced(self) -> EnforcementAction:
        """The action recorded in status when a breach happens under this setting."""
        return _ENFORCED[self]


class EnforcementAction(StrEnum):
    """The breach action in force (``status.enforcement.action``)."""

    NONE = "None"
    SUSPENDED = "Suspended"
    QUARANTINED = "Quarantined"

    @property
    def strength(self) -> int:
        """Order for merging replicas' views: a stronger action wins on the same breach."""
        return _STRENGTH[self]


_ENFORCED = {
    BreachAction.ALERT: EnforcementAction.NONE,
    BreachAction.SUSPEND: EnforcementAction.SUSPENDED,
    BreachAction.QUARANTINE: EnforcementAction.QUARANTINED,
}
_STRENGTH = {
    EnforcementAction.NONE: 0,
    EnforcementAction.SUSPENDED: 1,
    EnforcementAction.QUARANTINED: 2,
}
