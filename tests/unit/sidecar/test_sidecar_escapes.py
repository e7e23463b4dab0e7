"""Decoded views of JSON-escaped text, and the map back to raw positions (pure)."""

from __future__ import annotations

import pytest

from promethios.sidecar import escapes
from promethios.sidecar.escapes import decode_once, decoded_views


def test_no_backslash_no_view() -> None:
    assert list(decoded_views("plain text, no escapes")) == []
    assert decode_once("a \\x b") is None  # not a JSON escape: left alone


def test_decoded_positions_map_back_to_the_escapes() -> None:
    raw = 'to: "jane\\u0040example.com" \\"q\\"'
    [view] = decoded_views(raw)
    assert view.text == 'to: "jane@example.com" "q"'
    start = view.text.index("jane")
    end = start + len("jane@example.com")
    lo, hi = view.raw_span(start, end)
    assert raw[lo:hi] == "jane\\u0040example.com"
    assert raw[slice(*view.raw_span(len(view.text) - 3, len(view.text)))] == '\\"q\\"'


def test_double_encoding_is_undone_twice() -> None:
    raw = "jane\\\\u0040example.com"
    views = list(decoded_views(raw))
    assert [v.text for v in views] == ["jane\\u0040example.com", "jane@example.com"]
    last = views[-1]
    assert last.raw_span(0, len(last.text)) == (0, len(raw))


def test_long_text_is_decoded_in_bounded_overlapping_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(escapes, "WINDOW", 64)
    monkeypatch.setattr(escapes, "OVERLAP", 16)
    raw = ("x" * 50 + "\\u0041") * 6
    views = list(decoded_views(raw))
    assert all(len(v.text) <= 64 for v in views)
    assert len(views) >= 6
    found = {v.raw_span(i, i + 1) for v in views for i, c in enumerate(v.text) if c == "A"}
    assert {raw[a:b] for a, b in found} == {"\\u0041"}
    assert len(found) == 6  # every escape, seen in raw positions
