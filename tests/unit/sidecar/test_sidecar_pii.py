"""PII detectors, the Luhn check and redaction."""

from __future__ import annotations

import pytest

from promethios.api.policy import PiiType
from promethios.sidecar.pii import find_pii, luhn_valid, placeholder, redact

ALL = [t.value for t in PiiType]


@pytest.mark.parametrize(
    "number",
    ["4111111111111111", "5500005555555559", "378282246310005", "6011111111111117", "79927398713"],
)
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number", ["4111111111111112", "1234567812345678", "79927398710", "12a4", ""]
)
def test_luhn_rejects_invalid_numbers(number: str) -> None:
    assert not luhn_valid(number)


def kinds(text: str, types: list[str] = ALL) -> list[str]:
    return [m.kind.value for m in find_pii(text, types)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+tag@example.co.uk now", ["email"]),
        ("call (415) 555-0100 today", ["phone"]),
        ("call 415-555-0100 today", ["phone"]),
        ("call +44 20 7946 0958 today", ["phone"]),
        ("card 4111 1111 1111 1111 exp", ["creditCard"]),
        ("card 4111-1111-1111-1111 exp", ["creditCard"]),
        ("ssn 123-45-6789 on file", ["ssn"]),
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234", ["apiKey"]),
        ("aws AKIAIOSFODNN7EXAMPLE here", ["apiKey"]),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789 x", ["apiKey"]),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", ["apiKey"]),
        ("a@b.io and 123-45-6789", ["email", "ssn"]),
    ],
)
def test_detects_each_kind(text: str, expected: list[str]) -> None:
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails luhn",
        "order 1234567812345678 is not a card",
        "all zeros 0000000000000000",
        "ssn-like 000-12-3456 and 666-12-3456 and 900-12-3456 are invalid",
        "ssn-like 123-00-4567 and 123-45-0000 are invalid",
        "at 2024-01-15 12:30:45 the build 3.11.7 ran",
        "sk-short is not a key",
        "the word bearer alone",
        "no at sign example.com",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert kinds(text) == []


def test_only_requested_kinds_are_detected() -> None:
    text = "jane@example.com 123-45-6789"
    assert kinds(text, ["ssn"]) == ["ssn"]
    assert kinds(text, []) == []


def test_card_wins_over_phone_on_overlap() -> None:
    matches = find_pii("pay 4111111111111111 now", ALL)
    assert [m.kind.value for m in matches] == ["creditCard"]


def test_redact_replaces_every_match_and_keeps_the_rest() -> None:
    text = "mail jane@example.com or call 415-555-0100."
    out = redact(text, find_pii(text, ALL))
    assert out == f"mail {placeholder('email')} or call {placeholder('phone')}."
    assert "jane" not in out and "555" not in out
