"""The status codec: what leaves conforms to the schema; what comes back reads typed."""

from __future__ import annotations

import math

import hypothesis
import hypothesis.strategies

from promethios.ingest.codec import conform, decode_status, rfc3339

T0 = 1_700_000_000.0


def test_conform_drops_only_what_the_schema_refuses() -> None:
    body = {
        "heartbeat": {"state": "active", "uptimeSeconds": math.inf, "lastActivity": "bad"},
        "governance": {
            "trustScore": 1.5,  # above the schema's maximum of 1
            "interactions": 3,
            "recentViolations": [
                {"id": "a", "type": "pii", "severity": "low", "time": "2024-01-01T00:00:00Z"},
                {"id": "b", "type": "pii", "severity": "low"},  # no time: the item goes
            ],
        },
    }
    conformed, dropped = conform(body)
    assert conformed["heartbeat"] == {"state": "active"}
    assert conformed["governance"]["interactions"] == 3
    assert "trustScore" not in conformed["governance"]
    assert [item["id"] for item in conformed["governance"]["recentViolations"]] == ["a"]
    assert set(dropped) == {
        "heartbeat.uptimeSeconds",
        "heartbeat.lastActivity",
        "governance.trustScore",
        "governance.recentViolations.1",
    }


def test_conform_keeps_a_valid_body_whole() -> None:
    body = {"heartbeat": {"state": "active", "lastHeartbeat": "2024-01-01T00:00:00Z"}}
    assert conform(body) == (body, [])


def test_times_that_cannot_be_represented_are_absent_not_errors() -> None:
    assert rfc3339(-62135596800.0 - 14 * 3600) is None  # year 0 in UTC
    assert rfc3339(math.nan) is None
    assert rfc3339(T0) == "2023-11-14T22:13:20Z"


def test_a_bad_section_never_hides_the_others() -> None:
    stored = decode_status(
        {
            "heartbeat": {"state": "bogus", "lastHeartbeat": "2024-01-01T00:00:00Z"},
            "governance": {"violations": {"high": 2}, "trustScore": 0.5},
            "enforcement": {"action": "Quarantined", "breach": 3, "criticalBreach": 3},
        },
        T0,
    )
    assert stored.heartbeat_state == "unknown"  # the invalid section reads as its default
    assert stored.counts["high"] == 2 and stored.trust_score == 0.5
    assert (stored.enforcement.action, stored.enforcement.critical_breach) == ("Quarantined", 3)


@hypothesis.given(
    hypothesis.strategies.floats(min_value=-1e10, max_value=2.5e11, allow_nan=False)
    | hypothesis.strategies.integers(min_value=0, max_value=2**34).map(lambda n: n + 0.9999995)
)
def test_rfc3339_names_the_second_datetime_would(seconds: float) -> None:
    """The remembered formatting agrees with datetime's own, rounding included."""
    from datetime import UTC, datetime

    from promethios.api.conditions import format_time

    expected = format_time(datetime.fromtimestamp(seconds, UTC))
    assert rfc3339(seconds) == expected


def test_rfc3339_of_what_datetime_cannot_hold_is_none() -> None:
    assert [rfc3339(v) for v in (None, float("nan"), float("inf"), -float("inf"), 1e20)] == [
        None
    ] * 5
