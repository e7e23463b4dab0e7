"""Kubernetes Events for violations (pure decisions and bodies; I/O in the client layer).

One Warning Event with reason ``PolicyViolation`` per violation of severity ≥ medium,
regarding the GovernedAgent. Repeats of the same type+severity for the same agent within
the aggregation window (10 min by default) patch the existing Event's ``count`` and
``lastTimestamp`` instead of creating another. Messages carry the type, severity and a
truncated description only — never the violation's context.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ..api.common import API_VERSION, Severity, severity_rank
from ..api.metadata import INGEST_FIELD_MANAGER
from .codec import rfc3339

COMPONENT = INGEST_FIELD_MANAGER
MAX_MESSAGE_DESCRIPTION = 256
MIN_SEVERITY = Severity.MEDIUM


@dataclass
class _Series:
    name: str
    count: int
    first: float
    last: float


@dataclass(frozen=True)
class EventAction:
    """Create a new Event, or patch an existing one's count."""

    create: bool
    name: str
    count: int
    first: float
    now: float


def wants_event(severity: str) -> bool:
    """Severity ≥ medium (False for anything that is not a severity)."""
    try:
        return severity_rank(severity) >= MIN_SEVERITY.rank
    except ValueError:
        return False


def message(vtype: str, severity: str, description: str) -> str:
    """Event message: type, severity and a truncated description (no context)."""
    text = description[:MAX_MESSAGE_DESCRIPTION]
    if len(description) > MAX_MESSAGE_DESCRIPTION:
        text += "…"
    return f"{severity} violation {vtype}" + (f": {text}" if text else "")


class EventAggregator:
    """Decides create-vs-patch per (agent, type, severity) within ``window`` seconds."""

    def __init__(self, window: float = 600.0, max_series: int = 10_000) -> None:
        self._window = window
        self._max = max_series
        self._series: dict[tuple[str, str, str], _Series] = {}

    def record(
        self, namespace: str, name: str, vtype: str, severity: str, now: float
    ) -> EventAction:
        """The action for one more violation."""
        key = (f"{namespace}/{name}", vtype, severity)
        series = self._series.get(key)
        if series is not None and now - series.last < self._window:
            series.count += 1
            series.last = now
            return EventAction(False, series.name, series.count, series.first, now)
        if len(self._series) >= self._max:
            self._series = {k: s for k, s in self._series.items() if now - s.last < self._window}
        event_name = f"{name}.{secrets.token_hex(8)}"[:253]
        self._series[key] = _Series(event_name, 1, now, now)
        return EventAction(True, event_name, 1, now, now)

    def forget(self, namespace: str, name: str, vtype: str, severity: str) -> None:
        """Drop a series whose Event could not be patched (it will be re-created)."""
        self._series.pop((f"{namespace}/{name}", vtype, severity), None)


def event_body(
    action: EventAction,
    namespace: str,
    name: str,
    uid: str,
    reason: str,
    text: str,
    event_type: str = "Warning",
) -> dict[str, object]:
    """A core/v1 Event regarding a GovernedAgent."""
    involved = {
        "apiVersion": API_VERSION,
        "kind": "GovernedAgent",
        "name": name,
        "namespace": namespace,
    }
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": action.name, "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": text[:1024],
        "type": event_type,
        "count": action.count,
        "firstTimestamp": rfc3339(action.first),
        "lastTimestamp": rfc3339(action.now),
        "source": {"component": COMPONENT},
    }


def count_patch(action: EventAction, text: str) -> dict[str, object]:
    """Merge patch bumping an aggregated Event."""
    return {"count": action.count, "lastTimestamp": rfc3339(action.now), "message": text[:1024]}
