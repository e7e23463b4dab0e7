"""One replica's deltas since its last successful status write (pure).

Several ingest replicas may write one agent's status; each keeps what it recorded since
its own last successful write and merges it onto the latest stored status before the
next write (see :mod:`.merge`). Counts and trust weight are aggregates; the newest
:data:`PENDING_ITEMS` violations are kept one by one, so a violation another replica
already stored can be taken out again (beyond that bound only the aggregates remain).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..api.common import SEVERITIES
from . import history
from .records import Recorded

PENDING_ITEMS = 1024
"""Unflushed violations remembered one by one for the cross-replica duplicate check."""


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(SEVERITIES, 0)


def _tidy(value: float) -> float:
    """Float sums and differences of weights leave crumbs; below 1e-9 is zero."""
    return 0.0 if value < 1e-9 else value


@dataclass(frozen=True, slots=True)
class PendingItem:
    """One violation recorded here and not yet in a successful status write."""

    seq: int
    recorded: Recorded
    marker: str
    weight: float


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """The deltas a status write carries (settled once the write succeeded)."""

    seq: int
    counts: tuple[int, ...]
    weight: float
    metrics: int
    lost: tuple[int, ...] = ()
    buckets: tuple[tuple[int, tuple[int, ...]], ...] = ()


@dataclass
class Pending:
    """Deltas since the last successful write: counts, trust weight, violations, metrics."""

    counts: dict[str, int] = field(default_factory=_zero_counts)
    weight: float = 0.0
    items: deque[PendingItem] = field(default_factory=lambda: deque(maxlen=PENDING_ITEMS))
    metrics: int = 0
    """Metrics reports received since the last write (their values are this replica's)."""
    lost: dict[str, int] = field(default_factory=_zero_counts)
    """Dropped violations the sidecar reported since the last write, by severity."""
    buckets: history.Buckets = field(default_factory=dict)
    """The violations above by time bucket (``violationHistory``)."""
    seq: int = 0

    def add(self, recorded: Recorded, marker: str, weight: float) -> None:
        """A violation was recorded."""
        self.seq += 1
        self.counts[recorded.severity] = self.counts.get(recorded.severity, 0) + 1
        self.weight += weight
        history.add(self.buckets, recorded.time, recorded.severity)
        self.items.append(PendingItem(self.seq, recorded, marker, weight))

    def snapshot(self) -> PendingSnapshot:
        """What a write rendered now carries."""
        counts = tuple(self.counts[s] for s in SEVERITIES)
        lost = tuple(self.lost[s] for s in SEVERITIES)
        return PendingSnapshot(
            self.seq, counts, self.weight, self.metrics, lost, history.snapshot(self.buckets)
        )

    def settle(self, snapshot: PendingSnapshot) -> None:
        """A write carrying ``snapshot`` succeeded: only later deltas remain."""
        for severity, count in zip(SEVERITIES, snapshot.counts, strict=True):
            self.counts[severity] = max(0, self.counts[severity] - count)
        self.weight = _tidy(self.weight - snapshot.weight)
        self.metrics = max(0, self.metrics - snapshot.metrics)
        for severity, count in zip(SEVERITIES, snapshot.lost, strict=False):
            self.lost[severity] = max(0, self.lost[severity] - count)
        history.subtract(self.buckets, history.from_snapshot(snapshot.buckets))
        while self.items and self.items[0].seq <= snapshot.seq:
            self.items.popleft()

    def drop_stored(self, ids: set[str], markers: set[str]) -> int:
        """Take out violations already stored (by id or marker); how many were."""
        keep: list[PendingItem] = []
        dropped = 0
        for item in self.items:
            if item.recorded.id in ids or item.marker in markers:
                dropped += 1
                severity = item.recorded.severity
                self.counts[severity] = max(0, self.counts[severity] - 1)
                self.weight = _tidy(self.weight - item.weight)
                history.subtract(
                    self.buckets, {history.bucket_of(item.recorded.time): {severity: 1}}
                )
            else:
                keep.append(item)
        if dropped:
            self.items = deque(keep, maxlen=PENDING_ITEMS)
        return dropped

    def newest_first(self) -> list[PendingItem]:
        """The remembered violations, newest first."""
        return list(reversed(self.items))

    @property
    def empty(self) -> bool:
        """No unflushed violation or metrics report."""
        return not (
            self.items or self.metrics or any(self.counts.values()) or any(self.lost.values())
        )
