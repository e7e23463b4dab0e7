"""Sliding windows, rate limits and the token budget, with a fake clock."""

from __future__ import annotations

from promethios.api.policy import GovernancePolicySpec
from promethios.sidecar.ratelimit import Limiter, SlidingWindow, estimate_tokens


def policy(**spec: object) -> GovernancePolicySpec:
    return GovernancePolicySpec.model_validate(spec)


def test_window_sums_only_recent_amounts() -> None:
    window = SlidingWindow(60)
    window.add(0, 5)
    window.add(30, 7)
    assert window.total(59) == 12
    assert window.total(60) == 7  # the first amount is exactly 60 s old: gone
    assert window.total(91) == 0


def test_window_ignores_non_positive_amounts() -> None:
    window = SlidingWindow(60)
    window.add(0, 0)
    window.add(0, -3)
    assert window.total(1) == 0


def test_retry_after_is_when_enough_expires() -> None:
    window = SlidingWindow(60)
    window.add(0, 1)
    window.add(10, 1)
    window.add(20, 1)
    assert window.retry_after(25, limit=3) == 35  # first one expires at 60
    assert window.retry_after(25, limit=2) == 45  # two must expire
    assert window.retry_after(25, limit=4) == 0


def test_requests_per_minute() -> None:
    limiter = Limiter(policy(rateLimits={"requestsPerMinute": 2}))
    assert limiter.check(0) is None
    assert limiter.check(1) is None
    refusal = limiter.check(2)
    assert refusal is not None and refusal.code == "rate_limit.requests"
    assert refusal.retry_after == 58
    assert limiter.check(60.5) is None  # the first request left the window


def test_refused_requests_do_not_count() -> None:
    limiter = Limiter(policy(rateLimits={"requestsPerMinute": 1}))
    assert limiter.check(0) is None
    for t in range(1, 50):
        assert limiter.check(t) is not None
    assert limiter.check(60) is None


def test_tokens_per_minute_refuses_once_window_is_full() -> None:
    limiter = Limiter(policy(rateLimits={"tokensPerMinute": 100}))
    assert limiter.check(0) is None
    limiter.record_tokens(0, 99)
    assert limiter.check(1) is None
    limiter.record_tokens(1, 5)
    refusal = limiter.check(2)
    assert refusal is not None and refusal.code == "rate_limit.tokens"
    assert refusal.retry_after == 58
    assert limiter.check(61) is None


def test_budget_exhaustion_over_its_own_window() -> None:
    limiter = Limiter(policy(budget={"tokens": 1000, "windowSeconds": 3600}))
    limiter.record_tokens(0, 1000)
    refusal = limiter.check(120)
    assert refusal is not None and refusal.code == "budget.exhausted"
    assert refusal.retry_after == 3480
    assert limiter.check(3600) is None


def test_budget_checked_before_rate() -> None:
    limiter = Limiter(policy(budget={"tokens": 10}, rateLimits={"requestsPerMinute": 1}))
    limiter.check(0)
    limiter.record_tokens(0, 10)
    refusal = limiter.check(1)
    assert refusal is not None and refusal.code == "budget.exhausted"


def test_no_limits_means_no_refusal() -> None:
    limiter = Limiter(policy())
    for t in range(1000):
        limiter.record_tokens(t / 10, 10_000)
        assert limiter.check(t / 10) is None


def test_carry_over_keeps_windows_on_reload() -> None:
    old = Limiter(policy(rateLimits={"requestsPerMinute": 5}))
    for t in range(3):
        old.check(t)
    new = Limiter(policy(rateLimits={"requestsPerMinute": 3}))
    new.carry_over(old)
    refusal = new.check(4)
    assert refusal is not None and refusal.code == "rate_limit.requests"


def test_estimate_tokens_is_len_over_four() -> None:
    assert estimate_tokens(44) == 11
    assert estimate_tokens(0) == 1
