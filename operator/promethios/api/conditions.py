"""Kubernetes API conventions every condition owner shares (standard library only).

- the transition rule: a condition's ``lastTransitionTime`` moves only when its
  ``status`` changes (a new reason or message alone is not a transition);
- ``metav1.Time``: RFC 3339 in UTC, second precision, ``Z`` suffix.

The operator (``Ready``/``Progressing``/``Degraded``) and the ingest API
(``HeartbeatFresh``/``PolicyCompliant``) both apply these; neither's condition types
belong here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


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
