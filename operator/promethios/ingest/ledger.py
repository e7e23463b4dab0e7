"""Budget ledgers: one budget in its current window, and the lease operations on it (pure).

A :class:`Ledger` holds what was spent (``used``, by model) and the leases granted to
sidecar instances. A lease's figures only grow within the window: ``granted`` (the
ingest's), ``consumed`` and ``returned`` (the holder's reports, cost priced here). What a
lease still holds back is ``granted - consumed - returned`` (never below 0), and the budget
grants only what ``limit - used - reserved`` leaves, so at any moment

    used + reserved <= limit   (per limited unit)

except by what calls spend beyond what they reserved (the documented overshoot).

Every operation is applied to the stored ledger as it is read just before a conditional
write (see :mod:`.usagewriter`), and a report takes the larger of the stored and the
reported figures, lease by lease and model by model: applying one report twice, two
replicas applying it, or an older report arriving after a newer one change nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..api.budget import (
    MAX_LEASE_MODELS,
    MAX_LEASES,
    MAX_MODELS,
    OTHER_MODEL,
    Budget,
    Pricing,
    to_micro,
    window_bounds,
)

UNITS = ("tokens", "requests", "cost")
CLOSED_LEASE_KEPT_SECONDS = 600.0
"""A closed lease stays this long (a late retry of its reports is still recognised)."""
RECHECK_SECONDS = 10.0
"""Retry-After when an exhausted budget has allowance out that may still come back."""


@dataclass
class Units:
    """Tokens, requests and cost (millionths of the currency)."""

    tokens: int = 0
    requests: int = 0
    cost: int = 0

    def get(self, unit: str) -> int:
        """One unit's figure."""
        return int(getattr(self, unit))

    def at_least(self, other: Units) -> Units:
        """The larger figure of each unit."""
        return Units(*(max(self.get(u), other.get(u)) for u in UNITS))


@dataclass
class Tally:
    """Usage of one model: tokens in and out, requests, cost."""

    input: int = 0
    output: int = 0
    requests: int = 0
    cost: int = 0


@dataclass
class Limits:
    """Per-window limits; None: that unit is not limited."""

    tokens: int | None = None
    requests: int | None = None
    cost: int | None = None

    def get(self, unit: str) -> int | None:
        """One unit's limit."""
        value = getattr(self, unit)
        return None if value is None else int(value)

    @classmethod
    def of(cls, budget: Budget) -> Limits:
        """The limits of a budget spec (cost in millionths)."""
        cost = to_micro(budget.cost) if budget.cost is not None else None
        return cls(budget.tokens, budget.requests, cost)


@dataclass
class LeaseBook:
    """One holder's allowance in the window (cumulative figures)."""

    id: str
    updated: float
    granted: Units = field(default_factory=Units)
    consumed: Units = field(default_factory=Units)
    returned: Units = field(default_factory=Units)
    usage: dict[str, list[int]] = field(default_factory=dict)
    """model -> [input tokens, output tokens, requests], as last reported."""
    closed: bool = False

    def held(self, unit: str) -> int:
        """Allowance still held back for this lease."""
        return max(0, self.granted.get(unit) - self.consumed.get(unit) - self.returned.get(unit))


@dataclass
class Ledger:
    """One budget in its current window."""

    name: str
    scope: str
    window: str
    start: float
    end: float
    limits: Limits
    currency: str = "USD"
    used: Units = field(default_factory=Units)
    input_tokens: int = 0
    output_tokens: int = 0
    by_model: dict[str, Tally] = field(default_factory=dict)
    leases: dict[str, LeaseBook] = field(default_factory=dict)
    alerted: set[int] = field(default_factory=set)

    def reserved(self) -> Units:
        """Allowance held back by leases."""
        return Units(*(sum(lease.held(u) for lease in self.leases.values()) for u in UNITS))

    def percent(self) -> int:
        """The highest used/limit of the limited units, in whole percent."""
        shares = [
            math.floor(100 * self.used.get(u) / limit)
            for u in UNITS
            if (limit := self.limits.get(u)) is not None
        ]
        return max(shares, default=0)


@dataclass(frozen=True)
class LeaseOp:
    """What one sidecar instance reports for one lease."""

    lease_id: str
    window_start: float | None
    usage: tuple[tuple[str, int, int, int], ...] = ()
    target: Units = field(default_factory=Units)
    returned: Units = field(default_factory=Units)
    close: bool = False
    minimum: Units | None = None
    """The part of ``target`` needed at once; None: all of it."""


@dataclass(frozen=True)
class LeaseOutcome:
    """The lease after an operation (cumulative), and what the holder should know."""

    window_start: float
    window_end: float
    granted: Units = field(default_factory=Units)
    consumed: Units = field(default_factory=Units)
    returned: Units = field(default_factory=Units)
    exhausted: bool = False
    """Not even what the holder needs at once could be granted."""
    retry_after: float = 0.0
    stale: bool = False
    """The lease's window is over: nothing was applied; start a lease in the current one."""


def new_ledger(budget: Budget, currency: str, now: float) -> Ledger:
    """An empty ledger for ``budget`` in the window holding ``now``."""
    start, end = window_bounds(str(budget.window), now)
    return Ledger(
        budget.name, str(budget.scope), str(budget.window), start, end, Limits.of(budget), currency
    )


def conform(ledger: Ledger | None, budget: Budget, currency: str, now: float) -> Ledger:
    """``ledger`` under the current spec of its budget, rolled to the current window.

    A changed window kind or currency starts afresh; changed limits apply at once.
    """
    if ledger is None or ledger.window != budget.window or ledger.currency != currency:
        return new_ledger(budget, currency, now)
    ledger = replace(ledger, scope=str(budget.scope), limits=Limits.of(budget))
    return roll(ledger, now)


def roll(ledger: Ledger, now: float) -> Ledger:
    """The ledger of the window holding ``now`` (unchanged while its window lasts).

    Windows only move forward: a replica whose clock is behind keeps the stored window.
    """
    if now < ledger.end:
        return ledger
    start, end = window_bounds(ledger.window, now)
    if start <= ledger.start:
        return ledger
    return Ledger(
        ledger.name, ledger.scope, ledger.window, start, end, ledger.limits, ledger.currency
    )


def cost_of(pricing: Pricing | None, model: str, input_tokens: int, output_tokens: int) -> int:
    """Millionths of the currency for these tokens (0 if the model has no price)."""
    price = pricing.price(model) if pricing is not None else None
    if price is None:
        return 0
    micro = input_tokens * price.input_per_million + output_tokens * price.output_per_million
    return math.ceil(micro)


def apply(ledger: Ledger, op: LeaseOp, pricing: Pricing | None, now: float) -> LeaseOutcome:
    """Apply one lease report: usage, returns, close, then a grant towards ``op.target``."""
    if op.window_start is not None and op.window_start < ledger.start - 0.5:
        return LeaseOutcome(ledger.start, ledger.end, stale=True)
    lease = ledger.leases.get(op.lease_id)
    if lease is None:
        compact(ledger, now)
        if len(ledger.leases) >= MAX_LEASES:
            return LeaseOutcome(
                ledger.start, ledger.end, exhausted=True, retry_after=RECHECK_SECONDS
            )
        lease = ledger.leases[op.lease_id] = LeaseBook(op.lease_id, now)
    for model, input_tokens, output_tokens, requests in op.usage:
        _charge(ledger, lease, model, (input_tokens, output_tokens, requests), pricing)
    lease.returned = lease.returned.at_least(op.returned)
    if op.close:
        lease.returned = lease.returned.at_least(
            Units(*(max(0, lease.granted.get(u) - lease.consumed.get(u)) for u in UNITS))
        )
        lease.closed = True
    exhausted, retry_after = (False, 0.0) if lease.closed else _grant(ledger, lease, op, now)
    lease.updated = now
    return LeaseOutcome(
        ledger.start,
        ledger.end,
        replace(lease.granted),
        replace(lease.consumed),
        replace(lease.returned),
        exhausted,
        retry_after,
    )


def _charge(
    ledger: Ledger,
    lease: LeaseBook,
    model: str,
    reported: tuple[int, int, int],
    pricing: Pricing | None,
) -> None:
    """Add what ``reported`` (cumulative) adds to what the lease reported before.

    Priced by the model's own name even when its tally is ``other`` (past the caps).
    """
    key = model if model in lease.usage or len(lease.usage) < MAX_LEASE_MODELS else OTHER_MODEL
    before = lease.usage.setdefault(key, [0, 0, 0])
    added = [max(0, now - then) for now, then in zip(reported, before, strict=True)]
    if not any(added):
        return
    lease.usage[key] = [then + extra for then, extra in zip(before, added, strict=True)]
    input_tokens, output_tokens, requests = added
    cost = cost_of(pricing, model, input_tokens, output_tokens)
    tokens = input_tokens + output_tokens
    for units in (ledger.used, lease.consumed):
        units.tokens += tokens
        units.requests += requests
        units.cost += cost
    ledger.input_tokens += input_tokens
    ledger.output_tokens += output_tokens
    if model not in ledger.by_model and len(ledger.by_model) >= MAX_MODELS:
        model = OTHER_MODEL
    tally = ledger.by_model.setdefault(model, Tally())
    tally.input += input_tokens
    tally.output += output_tokens
    tally.requests += requests
    tally.cost += cost


def _grant(ledger: Ledger, lease: LeaseBook, op: LeaseOp, now: float) -> tuple[bool, float]:
    """Grant towards the target as far as the limits allow; (exhausted?, Retry-After).

    Exhausted: not even what the holder needs at once could be granted.

    What the holder needs at once (``op.minimum``) is granted as far as there is room; the
    rest of its target only up to half the room left, so that a sidecar asking for a lot
    leaves the others some.
    """
    reserved = ledger.reserved()
    minimum = op.minimum if op.minimum is not None else op.target
    short: list[str] = []
    for unit in UNITS:
        limit = ledger.limits.get(unit)
        want = op.target.get(unit) - lease.granted.get(unit)
        if limit is None or want <= 0:
            continue
        room = max(0, limit - ledger.used.get(unit) - reserved.get(unit))
        needed = max(0, min(want, minimum.get(unit) - lease.granted.get(unit)))
        now_part = min(needed, room)
        give = now_part + min(want - now_part, (room - now_part) // 2)
        setattr(lease.granted, unit, lease.granted.get(unit) + give)
        if now_part < needed:
            short.append(unit)
    if not short:
        return False, 0.0
    others = [reserved.get(u) - lease.held(u) for u in short]
    until_reset = max(0.0, ledger.end - now)
    return True, min(until_reset, RECHECK_SECONDS) if any(others) else until_reset


def crossed(ledger: Ledger, thresholds: list[int]) -> list[int]:
    """Thresholds reached for the first time in this window (now marked alerted)."""
    percent = ledger.percent()
    reached = sorted(t for t in thresholds if percent >= t and t not in ledger.alerted)
    ledger.alerted.update(reached)
    return reached


def compact(ledger: Ledger, now: float) -> None:
    """Forget leases closed long enough ago (their usage stays in the totals)."""
    horizon = now - CLOSED_LEASE_KEPT_SECONDS
    for lease_id in [k for k, v in ledger.leases.items() if v.closed and v.updated < horizon]:
        del ledger.leases[lease_id]
