"""The violation history in status (``violationHistory``): buckets, ranges, replicas.

Time-range totals are read from what is stored, so they must be exact whichever replica
recorded the violations and survive a restart.
"""

from __future__ import annotations

from typing import Any

from test_ingest_merge import CONFIG, Store, flush, record, replica

from promethios.api.agentstatus import HISTORY_BUCKET_SECONDS, HISTORY_BUCKETS, GovernanceStatus
from promethios.ingest import history
from promethios.ingest.aggregator import Aggregator
from promethios.ingest.codec import decode_status, encode_status

#: A bucket boundary, so offsets below read plainly.
B0 = 1_700_000_100.0
assert B0 % HISTORY_BUCKET_SECONDS == 0


def stored_history(status: dict[str, Any]) -> history.Buckets:
    return history.decode(GovernanceStatus.model_validate(status["governance"]).violation_history)


def test_ranges_count_whole_buckets_from_the_one_the_range_starts_in() -> None:
    buckets: history.Buckets = {}
    history.add(buckets, B0 + 10, "low")
    history.add(buckets, B0 + 299, "high")
    history.add(buckets, B0 + 300, "critical", 2)
    assert history.since(buckets, B0 + 301) == {"low": 0, "medium": 0, "high": 0, "critical": 2}
    # a start inside the first bucket takes that bucket whole
    assert history.since(buckets, B0 + 200) == {"low": 1, "medium": 0, "high": 1, "critical": 2}
    assert history.since(buckets, B0 + 600) == {"low": 0, "medium": 0, "high": 0, "critical": 0}


def test_encoded_newest_first_within_the_window_and_bounded() -> None:
    buckets: history.Buckets = {}
    for i in range(HISTORY_BUCKETS + 50):
        history.add(buckets, B0 + i * HISTORY_BUCKET_SECONDS, "medium")
    now = B0 + (HISTORY_BUCKETS + 49) * HISTORY_BUCKET_SECONDS
    encoded = history.encode(buckets, now)
    assert len(encoded) == HISTORY_BUCKETS
    starts = [item["start"] for item in encoded]
    assert starts == sorted(starts, reverse=True)
    # what validates as the status model decodes back to the same buckets
    model = GovernanceStatus.model_validate({"violationHistory": encoded})
    history.prune(buckets, now)
    assert history.decode(model.violation_history) == buckets
    assert len(buckets) == HISTORY_BUCKETS


def test_two_replicas_store_the_exact_history_and_a_restart_keeps_it() -> None:
    store = Store()
    agg_a, a = replica(store, B0)
    agg_b, b = replica(store, B0)
    record(agg_a, a, ["a1", "a2"], "low", B0 + 5)
    record(agg_b, b, ["b1"], "low", B0 + 6)
    record(agg_b, b, ["b2"], "critical", B0 + 400)
    flush(a, store, B0 + 401)
    body = flush(b, store, B0 + 402)
    stored = stored_history(body)
    assert stored[int(B0)]["low"] == 3
    assert stored[int(B0) + 300]["critical"] == 1
    # replica a adds one more on top of what b stored
    record(agg_a, a, ["a3"], "high", B0 + 410)
    body = flush(a, store, B0 + 411)
    assert history.since(stored_history(body), B0) == {
        "low": 3,
        "medium": 0,
        "high": 1,
        "critical": 1,
    }
    # a restarted replica resumes from the stored history and adds to it
    fresh_agg = Aggregator()
    fresh = fresh_agg.upsert_agent(CONFIG, B0 + 500, body)
    record(fresh_agg, fresh, ["c1"], "low", B0 + 500)
    again = encode_status(fresh, B0 + 501)
    assert history.since(stored_history(again), B0)["low"] == 4
    assert decode_status(again, B0 + 501).buckets == fresh.buckets


def test_summary_severities_come_from_the_merged_history() -> None:
    store = Store()
    agg_a, a = replica(store, B0)
    agg_b, b = replica(store, B0)
    record(agg_b, b, ["b1", "b2"], "high", B0 + 10)
    flush(b, store, B0 + 20)
    # replica a never saw b's violations itself; after it reads the stored status it
    # answers the same range totals as b
    Aggregator.observe(a, store.observed(), B0 + 30)
    for agg in (agg_a, agg_b):
        fleet = agg.summary(3600, B0 + 60)["fleet"]["violations"]
        assert fleet["bySeverity"]["high"] == 2 and fleet["total"] == 2
