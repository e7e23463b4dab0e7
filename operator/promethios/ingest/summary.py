"""The fleet summary behind ``GET /api/v1/governance/summary?range=`` (pure).

Per agent: its state (``stale`` when no heartbeat within its window), last heartbeat,
server and reported trust, enforcement action, and the violations recorded within the
range by severity and type. Fleet: agent counts by state, violation totals by severity and
type, minimum and mean trust.

The severities come from the violation history every replica merges into the status
(:mod:`.history`: 5-minute buckets, the range's start rounded down to one), so they are
the same whichever replica answers; ``byType`` is this replica's own (per-type counts are
not in the status, like the per-type metrics).

At 10,000 agents a summary takes about a second to build. The reports share the event loop
with it, so the endpoint builds it a batch of agents at a time (:class:`SummaryBuilder`),
letting the reports in between: every agent's entry is taken whole at one instant, the
fleet totals are the sum of the entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..api.common import SEVERITIES
from . import history
from .codec import rfc3339
from .state import AgentState

_COMPACT = (",", ":")


class SummaryBuilder:
    """A summary built from batches of agents (in ``agentId`` order, each agent once)."""

    def __init__(self, range_seconds: float, now: float) -> None:
        self.range_seconds = range_seconds
        self.now = now
        self.since = now - range_seconds
        self.fleet: dict[str, Any] = {
            "agents": dict.fromkeys(
                ("total", "active", "inactive", "error", "stale", "unknown"), 0
            ),
            "violations": {"total": 0, "bySeverity": dict.fromkeys(SEVERITIES, 0), "byType": {}},
        }
        self._trust_sum = 0.0
        self._trust_min: float | None = None
        self._encoded: list[str] = []

    def add(self, states: Iterable[AgentState]) -> list[dict[str, Any]]:
        """The entries of ``states``, counted into the fleet totals (and kept encoded)."""
        entries = [agent_summary(state, self.since, self.now) for state in states]
        for entry in entries:
            self._count(entry)
        if entries:
            self._encoded.append(json.dumps(entries, separators=_COMPACT)[1:-1])
        return entries

    def head(self) -> dict[str, Any]:
        """The document without its ``agents`` list."""
        total = self.fleet["agents"]["total"]
        trust = {
            "min": self._trust_min,
            "mean": round(self._trust_sum / total, 6) if total else None,
        }
        return {
            "rangeSeconds": self.range_seconds,
            "generatedAt": rfc3339(self.now),
            "fleet": {**self.fleet, "trust": trust},
        }

    def encode(self) -> bytes:
        """The whole document as JSON, from the batches encoded so far."""
        head = json.dumps(self.head(), separators=_COMPACT)
        return f'{head[:-1]},"agents":[{",".join(self._encoded)}]}}'.encode()

    def _count(self, entry: dict[str, Any]) -> None:
        agents = self.fleet["agents"]
        agents["total"] += 1
        agents[entry["state"]] = agents.get(entry["state"], 0) + 1
        violations = self.fleet["violations"]
        violations["total"] += entry["violations"]["total"]
        for severity, count in entry["violations"]["bySeverity"].items():
            violations["bySeverity"][severity] += count
        for vtype, count in entry["violations"]["byType"].items():
            violations["byType"][vtype] = violations["byType"].get(vtype, 0) + count
        trust = entry["trustScore"]
        self._trust_sum += trust
        self._trust_min = trust if self._trust_min is None else min(self._trust_min, trust)


def in_order(agents: Iterable[AgentState]) -> list[AgentState]:
    """The agents in the summary's order (by ``agentId``)."""
    return sorted(agents, key=lambda s: s.config.agent_id)


def fleet_summary(agents: Iterable[AgentState], range_seconds: float, now: float) -> dict[str, Any]:
    """Fleet and per-agent aggregates over the last ``range_seconds``, in one go."""
    builder = SummaryBuilder(range_seconds, now)
    entries = builder.add(in_order(agents))
    return {**builder.head(), "agents": entries}


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
