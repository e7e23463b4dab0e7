"""What each page shows, computed from the cached rows (pure: ``now`` is passed in).

The fleet page filters by namespace, state and policy and sorts worst first: a breach
action in force (Quarantined before Suspended), then not Ready, then a stale heartbeat,
then not PolicyCompliant, then the most severe violations within the range, then the
lowest trust. Namespaces are only ever those the viewer may see (decided by
:mod:`.authz`, passed in here).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from ..api.agentstatus import HISTORY_BUCKET_SECONDS
from ..api.common import SEVERITIES
from ..ingest import history
from .model import AgentRow, PolicyRow, SinkRow

#: The ranges the pages offer; the summary API takes any ``<n>[smhd]`` up to 24 h.
RANGES: dict[str, int] = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400}
DEFAULT_RANGE = "1h"
STATES = ("all", "attention", "enforced", "not-ready", "stale", "healthy")
_RANGE = re.compile(r"^([0-9]{1,7})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_range(text: str, maximum: float = history.WINDOW_SECONDS) -> float:
    """``90s``, ``15m``, ``1h``, ``1d`` or plain seconds, within (0, maximum].

    Raises ValueError naming the field and what is expected.
    """
    match = _RANGE.match(text.strip())
    if not match:
        raise ValueError("range: expected e.g. 15m, 1h, 24h or seconds")
    seconds = float(int(match.group(1)) * _UNITS[match.group(2)])
    if not 0 < seconds <= maximum:
        raise ValueError(f"range: must be within 1s and {maximum:g}s")
    return seconds


def age(seconds: float | None) -> str:
    """A short age: ``42s``, ``5m``, ``3h``, ``2d``; ``never`` for None."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def health(row: AgentRow, now: float) -> str:
    """The one word the fleet page leads with."""
    if row.enforced:
        return row.enforcement
    if not row.is_ready:
        return "NotReady"
    if row.stale(now):
        return "Stale"
    if row.policy_compliant is not None and row.policy_compliant.status == "False":
        return "NonCompliant"
    return "Healthy"


_MOST_SEVERE_FIRST = tuple(str(s) for s in reversed(SEVERITIES))
_HEALTH_RANK = {"Quarantined": 0, "Suspended": 1, "NotReady": 2, "Stale": 3, "NonCompliant": 4}


def worst_first_key(
    row: AgentRow, counts: Mapping[str, int], now: float
) -> tuple[int, tuple[int, ...], float, str]:
    """Sort key: health, then violations in range (most severe first), trust, name."""
    word = health(row, now)
    by_severity = tuple(-counts.get(s, 0) for s in reversed(SEVERITIES))
    trust = row.trust if row.trust is not None else 1.0
    return (_HEALTH_RANK.get(word, 5), by_severity, trust, row.key)


def _entry_key(entry: FleetEntry) -> tuple[int, tuple[int, ...], float, str]:
    """:func:`worst_first_key` from what the entry already computed."""
    row = entry.row
    by_severity = tuple(-count for _, count in entry.cells)
    trust = row.trust if row.trust is not None else 1.0
    return (_HEALTH_RANK.get(entry.health, 5), by_severity, trust, row.key)


def matches_state(row: AgentRow, state: str, now: float) -> bool:
    """Whether ``row`` passes the fleet page's state filter."""
    if state == "attention":
        return health(row, now) != "Healthy"
    if state == "enforced":
        return row.enforced
    if state == "not-ready":
        return not row.is_ready
    if state == "stale":
        return row.stale(now)
    if state == "healthy":
        return health(row, now) == "Healthy"
    return True


@dataclass(frozen=True)
class FleetFilter:
    """The fleet page's filters (from the query string; unknown values mean "all")."""

    namespace: str = ""
    state: str = "all"
    policy: str = ""
    range: str = DEFAULT_RANGE

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FleetFilter:
        """Read the filters, falling back to "all" for anything not offered."""
        state = query.get("state", "all")
        chosen = query.get("range", DEFAULT_RANGE)
        return cls(
            namespace=query.get("namespace", "")[:253],
            state=state if state in STATES else "all",
            policy=query.get("policy", "")[:253],
            range=chosen if chosen in RANGES else DEFAULT_RANGE,
        )


@dataclass(frozen=True)
class FleetEntry:
    """One row of the fleet table."""

    row: AgentRow
    health: str
    counts: Mapping[str, int]
    in_range: int
    heartbeat_age: str
    trend: str
    ready: str = "Unknown"
    trust: str = "—"
    total: int = 0
    cells: tuple[tuple[str, int], ...] = ()
    """(severity, count in range), most severe first: what the row shows."""

    # Precomputed markup from numbers and fixed words only (nothing from the object's
    # strings, which the template escapes): a 1,000-row page renders in a fraction of the time.
    @property
    def cells_html(self) -> Markup:
        """The severity counts as badges."""
        return Markup(
            "".join(f'<span class="sev {s if n else "zero"}">{n}</span> ' for s, n in self.cells)
        )

    @property
    def trend_svg(self) -> Markup:
        """The trust sparkline (numbers only), or nothing."""
        if not self.trend:
            return Markup("")
        return Markup(
            '<svg class="trend" width="60" height="16" viewBox="0 0 60 16">'
            f'<polyline points="{self.trend}"/></svg>'
        )

    @property
    def heartbeat(self) -> str:
        """``active · 5s``."""
        return f"{self.row.heartbeat_state} · {self.heartbeat_age}"

    @property
    def enforcement_html(self) -> Markup:
        """The breach action in force, or "none"."""
        if not self.row.enforced:
            return Markup('<span class="muted">none</span>')
        return Markup('<span class="badge bad">{} #{}</span>').format(
            self.row.enforcement, self.row.breach
        )


@dataclass(frozen=True)
class FleetPage:
    """The fleet table and what the filter controls offer."""

    entries: tuple[FleetEntry, ...]
    namespaces: tuple[str, ...]
    policies: tuple[str, ...]
    totals: Mapping[str, int]
    health_counts: Mapping[str, int]
    shown: int
    visible: int


def sparkline(points: Sequence[float], width: int = 60, height: int = 16) -> str:
    """SVG polyline points for trust values in [0, 1] ("" with fewer than two)."""
    if len(points) < 2:
        return ""
    step = width / (len(points) - 1)
    return " ".join(
        f"{i * step:.1f},{height - max(0.0, min(1.0, value)) * height:.1f}"
        for i, value in enumerate(points)
    )


def fleet_page(
    rows: Iterable[AgentRow],
    visible: Collection[str],
    chosen: FleetFilter,
    now: float,
    sparklines: Mapping[str, str] | None = None,
) -> FleetPage:
    """The fleet page: only ``visible`` namespaces, filtered, worst first."""
    since = now - RANGES[chosen.range]
    seen = [row for row in rows if row.namespace in visible]
    entries = []
    health_counts: dict[str, int] = {}
    for row in seen:
        word = health(row, now)
        health_counts[word] = health_counts.get(word, 0) + 1
        if chosen.namespace and row.namespace != chosen.namespace:
            continue
        if chosen.policy and row.policy != chosen.policy:
            continue
        if not matches_state(row, chosen.state, now):
            continue
        counts = history.since(row.buckets, since)
        entries.append(
            FleetEntry(
                row=row,
                health=word,
                counts=counts,
                in_range=sum(counts.values()),
                heartbeat_age=age(now - row.last_heartbeat if row.last_heartbeat else None),
                trend=(sparklines or {}).get(row.key, ""),
                ready=row.ready.status if row.ready else "Unknown",
                trust=f"{row.trust:.2f}" if row.trust is not None else "—",
                total=sum(row.totals.values()),
                cells=tuple((s, counts.get(s, 0)) for s in _MOST_SEVERE_FIRST),
            )
        )
    entries.sort(key=lambda e: _entry_key(e))
    totals = {str(s): 0 for s in SEVERITIES}
    for entry in entries:
        for severity, count in entry.counts.items():
            totals[severity] += count
    return FleetPage(
        entries=tuple(entries),
        namespaces=tuple(sorted({row.namespace for row in seen})),
        policies=tuple(sorted({row.policy for row in seen if row.policy})),
        totals=totals,
        health_counts=health_counts,
        shown=len(entries),
        visible=len(seen),
    )


@dataclass(frozen=True)
class PolicyEntry:
    """A policy with the agents that use it and their violations within the range."""

    policy: PolicyRow
    agents: tuple[str, ...]
    counts: Mapping[str, int]


def policy_entries(
    policies: Iterable[PolicyRow], agents: Iterable[AgentRow], since: float
) -> list[PolicyEntry]:
    """Each policy, the agents referring to it (same namespace) and their range totals."""
    users: dict[str, list[AgentRow]] = {}
    for agent in agents:
        users.setdefault(f"{agent.namespace}/{agent.policy}", []).append(agent)
    entries = []
    for policy in sorted(policies, key=lambda p: p.key):
        using = sorted(users.get(policy.key, []), key=lambda a: a.name)
        counts = {str(s): 0 for s in SEVERITIES}
        for agent in using:
            for severity, count in history.since(agent.buckets, since).items():
                counts[severity] += count
        entries.append(PolicyEntry(policy, tuple(a.name for a in using), counts))
    return entries


@dataclass(frozen=True)
class SinkEntry:
    """An AlertSink with the agents that send to it."""

    sink: SinkRow
    agents: tuple[str, ...]


def sink_entries(sinks: Iterable[SinkRow], agents: Iterable[AgentRow]) -> list[SinkEntry]:
    """Each sink and the agents (same namespace) naming it; failing sinks first."""
    users: dict[str, list[str]] = {}
    for agent in agents:
        for name in agent.alert_sinks:
            users.setdefault(f"{agent.namespace}/{name}", []).append(agent.name)
    entries = [SinkEntry(sink, tuple(sorted(users.get(sink.key, [])))) for sink in sinks]
    entries.sort(key=lambda e: (e.sink.ready is None or e.sink.ready.status != "False", e.sink.key))
    return entries


def violation_bars(
    buckets: Mapping[int, Mapping[str, int]], now: float, count: int = 24, size: int = 3600
) -> list[tuple[int, int, int]]:
    """Per hour over the last ``count`` hours: (start, total, critical+high), oldest first."""
    end = history.bucket_of(now) + HISTORY_BUCKET_SECONDS
    bars = []
    for index in range(count, 0, -1):
        start, stop = end - index * size, end - (index - 1) * size
        total = serious = 0
        for bucket, counts in buckets.items():
            if start <= bucket < stop:
                total += sum(counts.values())
                serious += counts.get("high", 0) + counts.get("critical", 0)
        bars.append((start, total, serious))
    return bars
