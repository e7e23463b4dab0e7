"""``GET /api/v1/governance/summary?range=``: the fleet over a time range, from stored status.

Everything here is read from the GovernedAgents' stored status, which every ingest replica
merges its counts into (:mod:`promethios.ingest.merge`): totals, trust, heartbeat,
enforcement and the 5-minute violation history. The answer is therefore the same from
every replica and every dashboard, exact to the bucket: the range's start is rounded down
to a bucket boundary (``since`` in the answer says where it began). Per-type counts are
not in the status and are not in this summary (the ingest API's own summary has this
replica's per-type counts).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from ..api.agentstatus import HISTORY_BUCKET_SECONDS
from ..api.common import SEVERITIES
from ..api.conditions import format_time
from ..ingest import history
from .model import AgentRow

STATES = ("active", "inactive", "error", "stale", "unknown")


def _time(seconds: float | None) -> str | None:
    return format_time(datetime.fromtimestamp(seconds, UTC)) if seconds is not None else None


def agent_state(row: AgentRow, now: float) -> str:
    """The heartbeat state, ``stale`` when no heartbeat within the agent's window."""
    if row.last_heartbeat is None:
        return "unknown"
    return "stale" if row.stale(now) else row.heartbeat_state


def fleet_summary(
    rows: Iterable[AgentRow], visible: Collection[str], range_seconds: float, now: float
) -> dict[str, Any]:
    """The summary document for the agents in ``visible`` namespaces."""
    start = history.bucket_of(now - range_seconds)
    agents: dict[str, int] = {"total": 0, **dict.fromkeys(STATES, 0)}
    by_severity = {str(s): 0 for s in SEVERITIES}
    entries = []
    trusts = []
    for row in sorted((r for r in rows if r.namespace in visible), key=lambda r: r.key):
        counts = history.since(row.buckets, start)
        state = agent_state(row, now)
        agents["total"] += 1
        agents[state] += 1
        for severity, count in counts.items():
            by_severity[severity] += count
        if row.trust is not None:
            trusts.append(row.trust)
        entries.append(
            {
                "agentId": row.key,
                "state": state,
                "ready": row.is_ready,
                "lastHeartbeat": _time(row.last_heartbeat),
                "trustScore": row.trust,
                "violations": {"total": sum(counts.values()), "bySeverity": counts},
                "violationsSinceCreation": {**row.totals, "total": sum(row.totals.values())},
                "enforcement": row.enforcement,
                "breach": row.breach,
            }
        )
    return {
        "rangeSeconds": range_seconds,
        "since": _time(start),
        "bucketSeconds": HISTORY_BUCKET_SECONDS,
        "generatedAt": _time(now),
        "source": "status",
        "fleet": {
            "agents": agents,
            "violations": {"total": sum(by_severity.values()), "bySeverity": by_severity},
            "trust": {
                "min": min(trusts, default=None),
                "mean": round(sum(trusts) / len(trusts), 6) if trusts else None,
            },
        },
        "agents": entries,
    }
