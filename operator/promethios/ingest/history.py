"""Violations per time bucket: ``status.governance.violationHistory`` (pure).

A violation recorded at ``t`` counts in the bucket starting at ``t`` rounded down to
:data:`~promethios.api.governedagent.HISTORY_BUCKET_SECONDS`. Buckets are plain sums, so
replicas merge them like the totals (stored + this replica's pending deltas, see
:mod:`.merge`), and a time-range total read from a stored status is the same whichever
replica recorded the violations. A range's start is rounded down to a bucket boundary:
``range=1h`` counts the violations of every bucket that began within the last hour, plus
the bucket the hour began in.

The dashboard reads the stored history with :func:`decode` and :func:`since`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from ..api.agentstatus import HISTORY_BUCKET_SECONDS, HISTORY_BUCKETS, ViolationBucket
from ..api.common import SEVERITIES
from ..api.conditions import format_time

#: bucket start (epoch seconds, a multiple of HISTORY_BUCKET_SECONDS) -> counts by severity
Buckets = dict[int, dict[str, int]]
#: How far back the history reaches.
WINDOW_SECONDS = HISTORY_BUCKET_SECONDS * HISTORY_BUCKETS


def bucket_of(at: float) -> int:
    """The start of the bucket ``at`` falls in."""
    return int(at // HISTORY_BUCKET_SECONDS) * HISTORY_BUCKET_SECONDS


def add(buckets: Buckets, at: float, severity: str, count: int = 1) -> None:
    """Count ``count`` violations of ``severity`` at ``at``."""
    counts = buckets.setdefault(bucket_of(at), {str(s): 0 for s in SEVERITIES})
    counts[severity] = counts.get(severity, 0) + count


def combine(first: Mapping[int, Mapping[str, int]], second: Buckets) -> Buckets:
    """Bucket-wise sum (a new mapping)."""
    merged: Buckets = {start: dict(counts) for start, counts in first.items()}
    for start, counts in second.items():
        target = merged.setdefault(start, {str(s): 0 for s in SEVERITIES})
        for severity, count in counts.items():
            target[severity] = target.get(severity, 0) + count
    return merged


def subtract(buckets: Buckets, carried: Mapping[int, Mapping[str, int]]) -> None:
    """Take ``carried`` out of ``buckets`` (never below zero; empty buckets go)."""
    for start, counts in carried.items():
        target = buckets.get(start)
        if target is None:
            continue
        for severity, count in counts.items():
            target[severity] = max(0, target.get(severity, 0) - count)
        if not any(target.values()):
            del buckets[start]


def prune(buckets: Buckets, now: float) -> None:
    """Forget buckets older than the window."""
    oldest = bucket_of(now) - WINDOW_SECONDS + HISTORY_BUCKET_SECONDS
    for start in [start for start in buckets if start < oldest]:
        del buckets[start]


def encode(buckets: Buckets, now: float) -> list[dict[str, object]]:
    """The status list: newest first, within the window, non-empty buckets only."""
    oldest = bucket_of(now) - WINDOW_SECONDS + HISTORY_BUCKET_SECONDS
    kept = sorted((s for s, c in buckets.items() if s >= oldest and any(c.values())), reverse=True)
    return [
        {
            "start": format_time(datetime.fromtimestamp(start, UTC)),
            **{severity: buckets[start].get(severity, 0) for severity in SEVERITIES},
        }
        for start in kept[:HISTORY_BUCKETS]
    ]


def decode(items: Iterable[ViolationBucket]) -> Buckets:
    """Buckets from the parsed status list (times not on a boundary are rounded down)."""
    buckets: Buckets = {}
    for item in items:
        for severity in SEVERITIES:
            count = getattr(item, severity)
            if count:
                add(buckets, item.start.timestamp(), severity, count)
    return buckets


_NONE = {str(severity): 0 for severity in SEVERITIES}


def since(buckets: Mapping[int, Mapping[str, int]], start: float) -> dict[str, int]:
    """Counts by severity of every bucket from the one ``start`` falls in onwards."""
    totals = dict(_NONE)
    if not buckets:  # most agents, most of the time: the summary asks 10,000 a second
        return totals
    first = bucket_of(start)
    for bucket, counts in buckets.items():
        if bucket >= first:
            for severity, count in counts.items():
                totals[severity] = totals.get(severity, 0) + count
    return totals


def snapshot(buckets: Buckets) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """An immutable copy (what a status write carries)."""
    return tuple(
        (start, tuple(counts.get(s, 0) for s in SEVERITIES))
        for start, counts in sorted(buckets.items())
    )


def from_snapshot(frozen: tuple[tuple[int, tuple[int, ...]], ...]) -> Buckets:
    """The mapping of a :func:`snapshot`."""
    return {start: dict(zip(SEVERITIES, counts, strict=True)) for start, counts in frozen}
