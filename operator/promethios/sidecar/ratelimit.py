"""Sliding-window rate limits and the token budget (pure; the clock is passed in).

Requests per minute are checked before a call (the call counts at once);
tokens are only known after the upstream answers (its ``usage`` field, or an
estimate of len/4), so the token limits refuse a call once the window is
already full rather than predicting the next call's size.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from promethios.api.policy import GovernancePolicySpec

MINUTE = 60.0


class SlidingWindow:
    """Amounts recorded with timestamps; sums those within the last ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def total(self, now: float) -> int:
        """The sum of amounts recorded in ``(now - seconds, now]``."""
        self._expire(now)
        return self._total

    def add(self, now: float, amount: int = 1) -> None:
        """Record ``amount`` at ``now``."""
        if amount <= 0:
            return
        self._expire(now)
        self._events.append((now, amount))
        self._total += amount

    def retry_after(self, now: float, limit: int) -> float:
        """Seconds until the total drops below ``limit`` (0 if it already is)."""
        self._expire(now)
        excess = self._total - limit + 1
        if excess <= 0:
            return 0.0
        for at, amount in self._events:
            excess -= amount
            if excess <= 0:
                return max(0.0, at + self.seconds - now)
        return self.seconds

    def _expire(self, now: float) -> None:
        horizon = now - self.seconds
        while self._events and self._events[0][0] <= horizon:
            self._total -= self._events.popleft()[1]


@dataclass(frozen=True)
class Refusal:
    """Why a call is over a limit, and when to retry."""

    code: str  # rate_limit.requests | rate_limit.tokens | budget.exhausted
    retry_after: float
    detail: str


class Limiter:
    """The policy's request and token limits and its budget, for one sidecar."""

    def __init__(self, policy: GovernancePolicySpec) -> None:
        limits = policy.rate_limits
        self.requests_per_minute = limits.requests_per_minute
        self.tokens_per_minute = limits.tokens_per_minute
        self.budget_tokens = policy.budget.tokens if policy.budget else None
        budget_seconds = float(policy.budget.window_seconds) if policy.budget else MINUTE
        self.requests = SlidingWindow(MINUTE)
        self.tokens = SlidingWindow(MINUTE)
        self.budget = SlidingWindow(budget_seconds)

    def check(self, now: float) -> Refusal | None:
        """The first limit a new call would break, or None (then the call is counted)."""
        refusal = self._refusal(now)
        if refusal is None:
            self.requests.add(now)
        return refusal

    def _refusal(self, now: float) -> Refusal | None:
        if self.budget_tokens is not None and self.budget.total(now) >= self.budget_tokens:
            return Refusal(
                "budget.exhausted",
                self.budget.retry_after(now, self.budget_tokens),
                f"token budget of {self.budget_tokens} per {self.budget.seconds:.0f}s is used up",
            )
        rpm = self.requests_per_minute
        if rpm is not None and self.requests.total(now) >= rpm:
            return Refusal(
                "rate_limit.requests",
                self.requests.retry_after(now, rpm),
                f"more than {rpm} requests per minute",
            )
        tpm = self.tokens_per_minute
        if tpm is not None and self.tokens.total(now) >= tpm:
            return Refusal(
                "rate_limit.tokens",
                self.tokens.retry_after(now, tpm),
                f"more than {tpm} tokens per minute",
            )
        return None

    def record_tokens(self, now: float, tokens: int) -> None:
        """Count tokens a call used against the per-minute limit and the budget."""
        self.tokens.add(now, tokens)
        self.budget.add(now, tokens)

    def carry_over(self, previous: Limiter) -> None:
        """Keep the windows of the limiter this one replaces (policy reload)."""
        self.requests, self.tokens = previous.requests, previous.tokens
        if previous.budget.seconds == self.budget.seconds:
            self.budget = previous.budget


def estimate_tokens(chars: int) -> int:
    """A rough token count when the upstream reports no usage: characters / 4."""
    return max(1, chars // 4)
