"""The sidecar's local trust-score estimate, fed by its own findings (pure)."""

from __future__ import annotations

from promethios.api.policy import GovernancePolicySpec


class TrustEstimator:
    """The sidecar's local trust-score estimate (0-100), fed by its own findings.

    Same model as the ingest API's: each violation costs its severity weight, and
    trust recovers linearly per hour. Time is passed in, so it stays pure.
    """

    def __init__(self, policy: GovernancePolicySpec, now: float) -> None:
        self.policy = policy
        self.score = 100.0
        self._at = now

    def record(self, severity: str, now: float) -> None:
        """Lower the score for one violation of ``severity``."""
        self._recover(now)
        weight = float(getattr(self.policy.trust_scoring.weights, severity, 0.0))
        self.score = max(0.0, self.score - weight * 100.0)

    def value(self, now: float) -> float:
        """The current estimate."""
        self._recover(now)
        return round(self.score, 3)

    def _recover(self, now: float) -> None:
        hours = max(0.0, now - self._at) / 3600.0
        self.score = min(
            100.0, self.score + hours * self.policy.trust_scoring.recovery_per_hour * 100
        )
        self._at = now
