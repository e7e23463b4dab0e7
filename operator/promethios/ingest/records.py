"""Value types of the ingest state: a recorded violation, a condition, a report's outcome.

Times are epoch seconds (floats) throughout the ingest API; :mod:`.codec` converts them
to and from ``metav1.Time`` at the status boundary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recorded:
    """A violation as recorded (what ``status.governance.recentViolations`` lists)."""

    id: str
    type: str
    severity: str
    description: str
    time: float


@dataclass
class ConditionState:
    """One ingest-owned condition, with the time its status last changed."""

    status: str
    reason: str
    message: str
    since: float


@dataclass(frozen=True)
class Outcome:
    """What one report did: newly recorded, duplicates, the violations it added, and the
    violations the sidecar said it dropped (by severity)."""

    accepted: int
    duplicates: int
    violations: tuple[Recorded, ...] = ()
    lost: tuple[tuple[str, int], ...] = ()
