"""The server-side trust score: what the ingest API believes, not what the agent says.

Formula (a "trust debt" that recovers linearly)::

    debt(t)  = min(1, max(0, debt(t0) - recovery_per_hour * hours(t - t0)) + Σ weight(sev_i))
    trust(t) = 1 - debt(t)                              (always within [0, 1])

- Each violation adds ``weight(severity)`` to the debt; the weights come from the
  agent's GovernancePolicy ``trustScoring.weights`` (defaults: low 0.01, medium 0.05,
  high 0.15, critical 0.4).
- The debt shrinks by ``recovery_per_hour`` (default 0.05) for every hour that passes,
  whether or not violations arrive: the policy field reads "trust regained per hour
  without violations", i.e. one fleet-wide recovery rate, not one per violation.
- The debt is capped at 1, so an agent that hit zero trust starts recovering at once
  instead of first paying off an unbounded backlog; from 0 it reaches 1 in
  ``1 / recovery_per_hour`` hours (20 h by default).

The state is two numbers (debt and the time it was last brought forward), so it is
O(1) per agent and survives a restart: on load, debt = 1 - status.governance.trustScore.

Several ingest replicas (see :func:`.aggregate.rebase`): the stored score is the source
of truth. Each replica keeps the weights it added since its last successful status write
(``W``, unflushed) and, before writing, merges them onto the stored score ``s`` written at
``t_s`` (the managedFields time of ingest's last status change)::

    debt(now) = min(1, max(0, (1 - s) - recovery_per_hour * hours(now - t_s)) + W)

so every violation's weight is taken from the score exactly once, whichever replica
recorded it, and recovery runs on one clock (the last write's). ``W`` is cleared only by
a write that carried it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.policy import SeverityWeights, TrustScoring

DEFAULT_SCORING = TrustScoring()


def weight(weights: SeverityWeights, severity: str) -> float:
    """Trust lost by one violation of ``severity`` (0 for an unknown severity)."""
    value = getattr(weights, severity, 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


@dataclass(slots=True)
class TrustDebt:
    """Trust debt at time ``at`` (epoch seconds)."""

    debt: float = 0.0
    at: float = 0.0

    def advance(self, now: float, recovery_per_hour: float) -> None:
        """Apply recovery for the time since ``at``; the clock never runs backwards."""
        if now > self.at:
            self.debt = max(0.0, self.debt - recovery_per_hour * (now - self.at) / 3600.0)
            self.at = now

    def add(self, amount: float, now: float, recovery_per_hour: float) -> None:
        """Bring the debt forward to ``now`` and add ``amount`` (capped at 1)."""
        self.advance(now, recovery_per_hour)
        self.debt = min(1.0, self.debt + amount)

    def score(self, now: float, recovery_per_hour: float) -> float:
        """Trust at ``now``, without mutating the state."""
        elapsed = max(0.0, now - self.at)
        debt = max(0.0, self.debt - recovery_per_hour * elapsed / 3600.0)
        return round(min(1.0, max(0.0, 1.0 - debt)), 6)

    @classmethod
    def from_score(cls, trust: float | None, now: float) -> TrustDebt:
        """The debt implied by a previously written score (restart)."""
        if trust is None:
            return cls(0.0, now)
        return cls(min(1.0, max(0.0, 1.0 - trust)), now)


def trust_after(violations: list[tuple[str, float]], scoring: TrustScoring, now: float) -> float:
    """Trust at ``now`` after ``(severity, time)`` violations from full trust (reference)."""
    state = TrustDebt(0.0, min((t for _, t in violations), default=now))
    for severity, at in sorted(violations, key=lambda item: item[1]):
        state.add(weight(scoring.weights, severity), at, scoring.recovery_per_hour)
    return state.score(now, scoring.recovery_per_hour)
