"""Budget ledgers (pure): windows, grants within the limit, idempotent reports, the codec."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promethios.api.budget import Budget, Pricing, window_bounds
from promethios.ingest.ledger import (
    LeaseOp,
    Units,
    apply,
    conform,
    crossed,
    new_ledger,
    roll,
)
from promethios.ingest.usagecodec import decode_usage, encode_usage

NOW = datetime(2025, 6, 14, 12, 30, 15, tzinfo=UTC).timestamp()


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("window", "moment", "start", "end"),
    [
        ("Minute", NOW, ts(2025, 6, 14, 12, 30), ts(2025, 6, 14, 12, 31)),
        ("Hour", NOW, ts(2025, 6, 14, 12), ts(2025, 6, 14, 13)),
        ("Day", NOW, ts(2025, 6, 14), ts(2025, 6, 15)),
        ("Month", NOW, ts(2025, 6, 1), ts(2025, 7, 1)),
        ("Month", ts(2025, 12, 31, 23, 59, 59), ts(2025, 12, 1), ts(2026, 1, 1)),
        ("Month", ts(2024, 2, 29, 12), ts(2024, 2, 1), ts(2024, 3, 1)),
        ("Day", ts(2025, 6, 15), ts(2025, 6, 15), ts(2025, 6, 16)),
    ],
)
def test_windows_are_calendar_aligned_in_utc(
    window: str, moment: float, start: float, end: float
) -> None:
    assert window_bounds(window, moment) == (start, end)


def budget(**fields: object) -> Budget:
    return Budget.model_validate({"name": "team", "window": "Day", **fields})


def op(lease: str, usage: tuple[tuple[str, int, int, int], ...] = (), **fields: object) -> LeaseOp:
    return LeaseOp(lease, fields.pop("window_start", None), usage, **fields)  # type: ignore[arg-type]


def test_grants_never_exceed_the_limit_across_leases() -> None:
    ledger = new_ledger(budget(tokens=1000), "USD", NOW)
    first = apply(ledger, op("a", target=Units(tokens=700)), None, NOW)
    second = apply(ledger, op("b", target=Units(tokens=700)), None, NOW)
    assert first.granted.tokens == 700 and not first.exhausted
    assert second.granted.tokens == 300 and second.exhausted
    assert ledger.reserved().tokens == 1000
    # b spends 250 of its 300 and gives back the rest: a may have it
    apply(ledger, op("b", (("m", 100, 150, 1),), returned=Units(tokens=50)), None, NOW)
    assert (ledger.used.tokens, ledger.reserved().tokens) == (250, 700)
    third = apply(ledger, op("a", target=Units(tokens=800)), None, NOW)
    assert third.granted.tokens == 750
    assert ledger.used.tokens + ledger.reserved().tokens == 1000


def test_reports_are_cumulative_so_replays_and_reordering_count_once() -> None:
    ledger = new_ledger(budget(tokens=10_000, requests=100), "USD", NOW)
    early = op("a", (("gpt", 10, 20, 1),), target=Units(tokens=500, requests=5))
    late = op("a", (("gpt", 30, 60, 3), ("mini", 5, 5, 1)), target=Units(tokens=500, requests=5))
    for report in (early, late, late, early, late):
        apply(ledger, report, None, NOW)
    assert (ledger.used.tokens, ledger.used.requests) == (100, 4)
    assert (ledger.input_tokens, ledger.output_tokens) == (35, 65)
    assert {m: (t.input, t.output, t.requests) for m, t in ledger.by_model.items()} == {
        "gpt": (30, 60, 3),
        "mini": (5, 5, 1),
    }
    assert ledger.leases["a"].granted == Units(tokens=500, requests=5)


def test_close_gives_everything_unspent_back() -> None:
    ledger = new_ledger(budget(tokens=100), "USD", NOW)
    apply(ledger, op("a", target=Units(tokens=100)), None, NOW)
    assert apply(ledger, op("b", target=Units(tokens=10)), None, NOW).granted.tokens == 0
    apply(ledger, op("a", (("m", 20, 20, 1),), close=True), None, NOW)
    assert (ledger.used.tokens, ledger.reserved().tokens) == (40, 0)
    assert apply(ledger, op("b", target=Units(tokens=60)), None, NOW).granted.tokens == 60
    # a closed lease gets nothing more, whatever it asks
    assert apply(ledger, op("a", target=Units(tokens=500)), None, NOW).granted.tokens == 100
    assert ledger.used.tokens + ledger.reserved().tokens == 100


def test_a_report_for_an_ended_window_changes_nothing() -> None:
    ledger = new_ledger(budget(tokens=100), "USD", NOW)
    apply(ledger, op("a", (("m", 10, 10, 1),), target=Units(tokens=50)), None, NOW)
    tomorrow = NOW + 86_400
    ledger = roll(ledger, tomorrow)
    assert (ledger.used.tokens, ledger.leases, ledger.start) == (0, {}, ts(2025, 6, 15))
    outcome = apply(
        ledger, op("a", (("m", 90, 90, 9),), window_start=ts(2025, 6, 14)), None, tomorrow
    )
    assert outcome.stale and ledger.used.tokens == 0
    assert not roll(ledger, NOW).start < ledger.start  # windows never move back


def test_cost_is_priced_per_model_and_limits_grants() -> None:
    pricing = Pricing.model_validate(
        {
            "models": [{"model": "big", "inputPerMillion": 10, "outputPerMillion": 30}],
            "default": {"inputPerMillion": 1, "outputPerMillion": 2},
        }
    )
    ledger = new_ledger(budget(cost=1.0), "EUR", NOW)  # 1 EUR = 1,000,000 micro
    apply(ledger, op("a", (("big", 1000, 2000, 1), ("small", 1000, 1000, 1))), pricing, NOW)
    assert ledger.used.cost == 1000 * 10 + 2000 * 30 + 1000 * 1 + 1000 * 2
    outcome = apply(ledger, op("a", target=Units(cost=2_000_000)), pricing, NOW)
    assert outcome.granted.cost == 1_000_000 - ledger.used.cost and outcome.exhausted


def test_thresholds_cross_once_per_window() -> None:
    ledger = new_ledger(budget(requests=10), "USD", NOW)
    apply(ledger, op("a", (("m", 1, 1, 7),)), None, NOW)
    assert crossed(ledger, [80, 95, 100]) == []
    apply(ledger, op("a", (("m", 1, 1, 8),)), None, NOW)
    assert crossed(ledger, [80, 95, 100]) == [80]
    assert crossed(ledger, [80, 95, 100]) == []
    apply(ledger, op("a", (("m", 1, 1, 10),)), None, NOW)
    assert crossed(ledger, [80, 95, 100]) == [95, 100]
    ledger = roll(ledger, NOW + 86_400)
    apply(ledger, op("a", (("m", 1, 1, 9),)), None, NOW + 86_400)
    assert crossed(ledger, [80, 95, 100]) == [80]


def test_closed_leases_are_forgotten_after_a_while_but_usage_stays() -> None:
    ledger = new_ledger(budget(tokens=10**6), "USD", NOW)
    apply(ledger, op("a", (("m", 5, 5, 1),), close=True), None, NOW)
    apply(ledger, op("b", target=Units(tokens=10)), None, NOW + 599)
    assert set(ledger.leases) == {"a", "b"}  # a late retry of a's reports is still known
    apply(ledger, op("c", target=Units(tokens=10)), None, NOW + 601)
    assert set(ledger.leases) == {"b", "c"}
    assert ledger.used.tokens == 10 and ledger.reserved().tokens == 20


def test_leases_are_bounded() -> None:
    ledger = new_ledger(budget(tokens=10**6), "USD", NOW)
    for i in range(128):
        apply(ledger, op(f"x{i}", target=Units(tokens=1)), None, NOW)
    full = apply(ledger, op("late", target=Units(tokens=1)), None, NOW)
    assert full.exhausted and full.granted.tokens == 0 and "late" not in ledger.leases


def test_conform_follows_the_spec() -> None:
    ledger = new_ledger(budget(tokens=100), "USD", NOW)
    apply(ledger, op("a", (("m", 5, 5, 1),)), None, NOW)
    raised = conform(ledger, budget(tokens=500), "USD", NOW)
    assert raised.limits.tokens == 500 and raised.used.tokens == 10
    other_window = conform(ledger, budget(tokens=500, window="Hour"), "USD", NOW)
    assert other_window.used.tokens == 0 and other_window.window == "Hour"


def test_codec_round_trip() -> None:
    pricing = Pricing.model_validate({"default": {"inputPerMillion": 3, "outputPerMillion": 15}})
    ledger = new_ledger(budget(tokens=10_000, cost=2.5, requests=50), "USD", NOW)
    apply(
        ledger,
        op("bot.abc12345", (("gpt", 100, 200, 2),), target=Units(1000, 5, 20_000)),
        pricing,
        NOW,
    )
    apply(ledger, op("bot.def67890", (("claude", 50, 50, 1),), close=True), pricing, NOW)
    crossed(ledger, [1])
    body = encode_usage([ledger], NOW)
    assert body["summary"] == f"{ledger.percent()}%"
    (entry,) = body["budgets"]
    assert entry["used"] == {
        "tokens": 400, "requests": 3, "cost": 0.0042, "inputTokens": 150, "outputTokens": 250
    }  # fmt: skip
    assert entry["limit"] == {"tokens": 10_000, "requests": 50, "cost": 2.5}
    assert entry["resetAt"] == "2025-06-15T00:00:00Z"
    decoded = decode_usage(body)["team"]
    assert decoded == ledger
    assert encode_usage(decode_usage(body).values(), NOW) == body


def test_a_stored_entry_that_does_not_validate_reads_as_absent() -> None:
    ledger = new_ledger(budget(tokens=10), "USD", NOW)
    body = encode_usage([ledger], NOW)
    bad = {**body["budgets"][0], "name": "other", "percent": -5}
    decoded = decode_usage({"budgets": [bad, body["budgets"][0]]})
    assert set(decoded) == {"team"}


def test_beyond_what_it_needs_now_a_lease_gets_half_of_what_is_left() -> None:
    ledger = new_ledger(budget(tokens=1000), "USD", NOW)
    greedy = apply(ledger, op("a", target=Units(tokens=900), minimum=Units(tokens=100)), None, NOW)
    assert greedy.granted.tokens == 100 + 450 and not greedy.exhausted  # it has what it needs
    second = apply(ledger, op("b", target=Units(tokens=900), minimum=Units(tokens=100)), None, NOW)
    assert second.granted.tokens == 100 + 175
    needy = apply(ledger, op("c", target=Units(tokens=900), minimum=Units(tokens=900)), None, NOW)
    assert needy.granted.tokens == 175 and needy.exhausted
    assert ledger.reserved().tokens == 1000
