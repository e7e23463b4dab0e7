"""The fleet summary behind ``GET /api/v1/governance/summary?range=`` (pure).

Per agent: its state (``stale`` when no heartbeat within its window), last heartbeat,
server and reported trust, enforcement action, and the violations recorded within the
range by severity and type. Fleet: agent counts by state, violation totals by severity and
type, minimum and mean trust.

The severities come from the violation history every replica merges into the status
(:mod:`.history`: 5-minute buckets, the range's start rounded down to one), so they are
the same whichever replica answers; ``byType`` is this replica's own (per-type counts are
not in the status, like the per-type metrics).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..api.common import SEVERITIES
from . import history
from .codec import rfc3339
from .state import AgentState


def fleet_summary(agents: Iterable[AgentState], range_seconds: float, now: float) -> dict[str, Any]:
    """Fleet and per-agent aggregates over the last ``range_seconds``."""
    since = now - range_seconds
    fleet: dict[str, Any] = {
        "agents": dict.fromkeys(("total", "active", "inactive", "error", "stale", "unknown"), 0),
        "violations": {"total": 0, "bySeverity": dict.fromkeys(SEVERITIES, 0), "byType": {}},
    }
    entries = []
    for state in sorted(agents, key=lambda s: s.config.agent_id):
        entry = agent_summary(state, since, now)
        entries.append(entry)
        _add_to_fleet(fleet, entry)
    trusts = [entry["trustScore"] for entry in entries]
    fleet["trust"] = {
        "min": min(trusts, default=None),
        "mean": round(sum(trusts) / len(trusts), 6) if trusts else None,
    }
    return {
        "rangeSeconds": range_seconds,
        "generatedAt": rfc3339(now),
        "fleet": fleet,
        "agents": entries,
    }


def agent_summary(state: AgentState, since: float, now: float) -> dict[str, Any]:
    """One agent's aggregates since ``since``."""
    by_severity = history.since(state.buckets, since)
    by_type: dict[str, int] = {}
    for at, _, vtype in state.history:
        if at >= since:
            by_type[vtype] = by_type.get(vtype, 0) + 1
    return {
        "agentId": state.config.agent_id,
        "state": "stale" if state.stale(now) else state.heartbeat_state,
        "lastHeartbeat": rfc3339(state.last_heartbeat),
        "trustScore": state.trust_score(now),
        "reportedTrustScore": state.reported_trust,
        "violations": {
            "total": sum(by_severity.values()),
            "bySeverity": by_severity,
            "byType": by_type,
        },
        "enforcement": str(state.enforcement.action),
    }


def _add_to_fleet(fleet: dict[str, Any], entry: dict[str, Any]) -> None:
    agents = fleet["agents"]
    agents["total"] += 1
    agents[entry["state"]] = agents.get(entry["state"], 0) + 1
    violations = fleet["violations"]
    violations["total"] += entry["violations"]["total"]
    for severity, count in entry["violations"]["bySeverity"].items():
        violations["bySeverity"][severity] += count
    for vtype, count in entry["violations"]["byType"].items():
        violations["byType"][vtype] = violations["byType"].get(vtype, 0) + count
