"""Per-agent token buckets: a misbehaving sidecar cannot flood the ingest API."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float | None:
        """Spend one token; None if allowed, else seconds until a token is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # only authenticated agents reach here; a reset is safe
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        if self._rate <= 0:
            return math.inf
        return (1.0 - bucket.tokens) / self._rate


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: whole seconds, at least 1."""
    if not math.isfinite(seconds):
        return "3600"
    return str(max(1, math.ceil(seconds)))
