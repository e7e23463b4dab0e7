"""What the agent reports about itself, folded into the sidecar's own reports.

The agent's heartbeats and metrics never reach the ingest API on the agent's
clock: each one is remembered here and answered at once, and the sidecar's own
periodic reports carry it. So an agent reporting as fast as it can costs the
ingest nothing, and cannot use up the per-agent budget that the sidecar's
violation deliveries need. What is folded, and how far it is trusted:

- ``status``: the agent's latest, for :data:`STATUS_TTL_BEATS` heartbeat
  intervals (then ``active``: the sidecar itself is alive); a change of status
  asks for an early heartbeat;
- ``lastActivity``: the later of the sidecar's own (last model call) and the
  agent's, never later than now: a bogus date can neither move it back nor ahead;
- ``trustScore``: the lower of the sidecar's estimate and the agent's own (an
  agent may lower its trust, never raise it); ``interactions``: the larger;
  ``responseTime``: the agent's if it reported one since the last report.

The agent's self-reported violations go to the spool, within a local budget
(:class:`TokenBucket`), so a flood of them is refused (429) at the sidecar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from promethios.api.wire import HeartbeatReport, MetricsReport

STATUS_TTL_BEATS = 3


@dataclass
class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; the clock is passed in."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, amount: float, now: float) -> float | None:
        """Spend ``amount`` tokens: None if allowed, else seconds until they would be."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if amount <= self.tokens:
            self.tokens -= amount
            return None
        if amount > self.burst or self.rate <= 0:
            return math.inf
        return (amount - self.tokens) / self.rate


@dataclass
class AgentReports:
    """The agent's latest self-reports (clock and wall clock passed in)."""

    status: str | None = None
    status_at: float = 0.0
    last_activity_wall: float | None = None
    trust_score: float | None = None
    interactions: int = 0
    response_time_ms: float | None = None

    def fold_heartbeat(self, report: HeartbeatReport, now: float, wall_now: float) -> bool:
        """Remember a heartbeat; True if the agent's status changed (report it early)."""
        changed = report.status != self.status
        self.status, self.status_at = report.status, now
        reported = min(report.last_activity.timestamp(), wall_now)
        if self.last_activity_wall is None or reported > self.last_activity_wall:
            self.last_activity_wall = reported
        return changed

    def fold_metrics(self, report: MetricsReport) -> None:
        """Remember a metrics report (its violations are spooled by the caller)."""
        metrics = report.metrics
        self.trust_score = metrics.trust_score
        self.interactions = max(self.interactions, metrics.interactions)
        self.response_time_ms = metrics.response_time

    def status_for(self, now: float, heartbeat_interval: float) -> str:
        """The status to report: the agent's own while it is fresh, else ``active``."""
        if self.status is None or now - self.status_at > STATUS_TTL_BEATS * heartbeat_interval:
            return "active"
        return self.status

    def last_activity(self, own_wall: float) -> float:
        """The later of the sidecar's and the agent's last activity."""
        return max(own_wall, self.last_activity_wall or own_wall)

    def trust(self, own: float) -> float:
        """The lower of the sidecar's estimate and the agent's (both 0-100)."""
        if self.trust_score is None:
            return own
        agent = self.trust_score * 100.0 if self.trust_score <= 1 else self.trust_score
        return round(min(own, agent), 3)

    def take_response_time(self, own_ms: float) -> float:
        """The agent's response time if it reported one since the last report, else ours."""
        reported, self.response_time_ms = self.response_time_ms, None
        return own_ms if reported is None else reported
