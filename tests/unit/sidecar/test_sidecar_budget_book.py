"""The sidecar's budget book (pure): reservations against leases, settlement, reports."""

from __future__ import annotations

from typing import Any

import pytest

from promethios.api.allowance import AllowanceResponse
from promethios.sidecar.budget import (
    BudgetBook,
    CallBounds,
    Refusal,
    Reservation,
    Shortfall,
)
from promethios.sidecar.usage import CallMeter, StreamUsage, output_bounds, split_usage

WALL = 1_750_000_000.0
WINDOW = "2025-06-15T00:00:00Z"
REQUIRED = frozenset({"policy/team"})


def info(budget: str = "policy/team", **fields: Any) -> dict[str, Any]:
    return {
        "budget": budget,
        "scope": "Agent",
        "window": "Day",
        "windowStart": WINDOW,
        "resetAt": WALL + 3600,
        "tokens": True,
        "requests": False,
        "cost": False,
        "whenIngestUnreachable": "FailOpen",
        "leaseSeconds": 60,
        "outputTokensPerCall": 100,
        **fields,
    }


def answer(granted: dict[str, int], exhausted: bool = False, **budget: Any) -> AllowanceResponse:
    return AllowanceResponse.model_validate(
        {
            "budgets": [info(**budget)],
            "leases": [
                {
                    "budget": budget.get("budget", "policy/team"),
                    "windowStart": WINDOW,
                    "granted": granted,
                    "consumed": {},
                    "returned": {},
                    "exhausted": exhausted,
                    "retryAfter": 30 if exhausted else 0,
                }
            ],
        }
    )


def call(input_bytes: int = 50, cap: int | None = 20, model: str = "gpt") -> CallBounds:
    return CallBounds(model, input_bytes, cap, 1)


def test_without_budgets_nothing_is_checked() -> None:
    book = BudgetBook()
    assert not book.active
    verdict = book.admit(call(), 0.0, WALL)
    assert isinstance(verdict, Reservation) and verdict.held == ()


def test_the_own_policys_budgets_wait_for_a_lease_whatever_an_answer_says() -> None:
    book = BudgetBook(REQUIRED)
    assert book.active and isinstance(book.admit(call(), 0.0, WALL), Shortfall)
    refused = book.admit(call(), 0.0, WALL, final=False)
    assert isinstance(refused, Refusal) and (refused.code, refused.status) == (
        "budget.unavailable",
        503,
    )
    book.apply(AllowanceResponse(), 0.0)  # an ingest that has not seen the policy yet
    assert isinstance(book.admit(call(), 0.0, WALL), Shortfall)
    other = BudgetBook(frozenset({"policy/other"}))
    other.apply(answer({"tokens": 500}), 0.0)
    assert isinstance(other.admit(call(), 0.0, WALL), Shortfall)  # fmt: skip


def test_calls_reserve_their_worst_case_and_settle_what_they_used() -> None:
    book = BudgetBook(REQUIRED)
    book.apply(answer({"tokens": 200}), 0.0)
    pool = book.pools["policy/team"]
    first = book.admit(call(50, 20), 1.0, WALL)
    second = book.admit(call(50, 20), 1.0, WALL)
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    assert pool.remaining(0) == 200 - 140
    assert isinstance(book.admit(call(50, 20), 1.0, WALL), Shortfall)
    book.settle(first, "gpt", 12, 8)
    assert pool.remaining(0) == 200 - 70 - 20
    book.cancel(second)
    assert pool.remaining(0) == 180 and pool.usage == {"gpt": [12, 8, 1]}
    # no max_tokens: the policy's outputTokensPerCall (100) is reserved
    assert isinstance(book.admit(call(50, None), 1.0, WALL), Reservation)
    assert pool.remaining(0) == 180 - 150


def test_reports_are_cumulative_and_ask_for_what_is_needed_plus_a_margin() -> None:
    book = BudgetBook(REQUIRED)
    book.apply(answer({"tokens": 200}), 0.0)
    held = book.admit(call(50, 20), 1.0, WALL)
    assert isinstance(held, Reservation)
    book.settle(held, "gpt", 30, 10)
    waiting = book.admit(call(100, 200), 2.0, WALL)
    assert isinstance(waiting, Shortfall)
    book.wait(waiting, 1)
    (report,) = book.reports(2.0)
    assert report["usage"] == [
        {"model": "gpt", "inputTokens": 30, "outputTokens": 10, "requests": 1}
    ]
    assert report["minimum"]["tokens"] == 40 + 300
    assert report["target"]["tokens"] > report["minimum"]["tokens"]
    assert report["windowStart"] == WINDOW and not report["close"]
    book.wait(waiting, -1)
    (closing,) = book.reports(3.0, closing=True)
    assert closing["close"] and closing["returned"]["tokens"] == 200 - 40


def test_an_exhausted_budget_refuses_without_asking_again() -> None:
    book = BudgetBook(REQUIRED)
    book.apply(answer({"tokens": 30}, exhausted=True), 10.0)
    refused = book.admit(call(50, 20), 11.0, WALL)
    assert isinstance(refused, Refusal)
    assert (refused.code, refused.status) == ("budget.exhausted", 429)
    assert refused.retry_after == pytest.approx(29.0)
    assert isinstance(book.admit(call(50, 20), 41.0, WALL), Shortfall)


def test_leases_end_with_their_window_and_fail_closed_leases_with_their_age() -> None:
    book = BudgetBook(REQUIRED)
    book.apply(answer({"tokens": 10_000}, whenIngestUnreachable="FailClosed"), 0.0)
    assert isinstance(book.admit(call(), 59.0, WALL), Reservation)
    assert isinstance(book.admit(call(), 61.0, WALL), Shortfall)  # not renewed in time
    refused = book.admit(call(), 61.0, WALL, final=False)
    assert isinstance(refused, Refusal) and refused.code == "budget.unavailable"
    open_book = BudgetBook(REQUIRED)
    open_book.apply(answer({"tokens": 10_000}), 0.0)
    assert isinstance(open_book.admit(call(), 3600.0, WALL), Reservation)  # FailOpen: spend on
    assert isinstance(open_book.admit(call(), 1.0, WALL + 3600), Shortfall)  # the window ended


def test_cost_budgets_need_a_price() -> None:
    prices = [{"model": "gpt", "inputPerMillion": 2.0, "outputPerMillion": 8.0}]
    book = BudgetBook(REQUIRED)
    book.apply(answer({"cost": 10_000}, tokens=False, cost=True, prices=prices), 0.0)
    held = book.admit(call(1000, 500, "gpt"), 1.0, WALL)
    assert isinstance(held, Reservation) and held.held[0][1] == [1500, 1, 2000 + 4000]
    refused = book.admit(call(10, 10, "mystery"), 1.0, WALL)
    assert isinstance(refused, Refusal) and (refused.code, refused.status) == (
        "budget.unpriced", 403
    )  # fmt: skip


def test_a_new_window_starts_a_new_lease() -> None:
    book = BudgetBook(REQUIRED)
    book.apply(answer({"tokens": 500}), 0.0)
    held = book.admit(call(), 1.0, WALL)
    assert isinstance(held, Reservation)
    later = answer({"tokens": 300})
    later.leases[0].window_start = "2025-06-16T00:00:00Z"
    book.apply(later, 2.0)
    book.settle(held, "gpt", 10, 10)  # straddled the boundary: not charged to the new lease
    pool = book.pools["policy/team"]
    assert (pool.granted[0], pool.consumed[0], pool.usage) == (300, 0, {})


def test_usage_parsing() -> None:
    assert split_usage({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}) == (10, 5)
    assert split_usage({"input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 2}) == (
        7,
        2,
    )
    assert split_usage({"total_tokens": 9}) == (0, 9)
    assert split_usage(None) is None and split_usage({"other": 1}) is None
    assert output_bounds({"max_tokens": 50, "n": 3}) == (50, 3)
    assert output_bounds({"max_completion_tokens": 7}) == (7, 1)
    assert output_bounds({"max_tokens": True, "n": 10_000}) == (None, 128)
    stream = StreamUsage(count_text=True)
    for piece in (
        b'event: message_start\ndata: {"type":"message_start",'
        b'"message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n',
        b'data: {"type":"content_block_delta",'
        b'"delta":{"type":"text_delta","text":"h\xc3\xa9"}}\r\n\r',
        b'\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n',
    ):
        stream.feed(piece)
    assert stream.usage == (25, 15)
    assert stream.text_bytes == len("text_delta") + len("hé".encode())
    assert CallMeter("chat", status=200, output_bytes=40).charge(100) == (100, 40)
    assert CallMeter("chat", status=429).charge(100) == (0, 0)
    assert CallMeter("chat", status=200, usage=(3, 4)).charge(100) == (3, 4)
