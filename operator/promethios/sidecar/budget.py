"""Budgets on the sidecar's side: the leases it holds and the check on every call (pure).

The ingest API is the authority (see :mod:`promethios.api.allowance`); the sidecar holds
one lease per budget that applies to its agent, and every call is checked against those
leases locally, with no round trip:

- before forwarding, :meth:`BudgetBook.admit` reserves the call's worst case on every
  lease: input tokens at most the request's bytes (a token is at least one byte), output
  tokens at most ``max_tokens`` (or ``max_completion_tokens`` / ``max_output_tokens``)
  times ``n``, else the policy's ``outputTokensPerCall``; one request; their cost at the
  model's price. A call that does not fit is a :class:`Shortfall` (ask the ingest, then
  check again) or a :class:`Refusal`;
- after the answer, :meth:`BudgetBook.settle` replaces the reservation with what the
  provider reported it used (or the upper bound when it reported nothing);
- :meth:`BudgetBook.reports` tells the ingest, per lease, cumulative usage by model, what
  it wants granted in total, what it gives back; :meth:`BudgetBook.apply` takes the answer.

A lease is void once its window ends by this sidecar's clock (the window is the ingest's:
a clock that runs ahead waits, one that lags spends its old lease, by as long as they
differ); under ``FailClosed`` also once it is older than ``leaseSeconds`` without renewal.
Clocks are passed in: ``mono`` (monotonic) and ``wall`` (epoch seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promethios.api.budget import MAX_LEASE_MODELS, OTHER_MODEL, WhenUnreachable

if TYPE_CHECKING:  # the wire models are loaded with the first exchange, not at start
    from promethios.api.allowance import AllowanceResponse, BudgetInfo

TOKENS, REQUESTS, COST = 0, 1, 2
UNIT_NAMES = ("tokens", "requests", "cost")
HORIZON_SECONDS = 5.0
"""A lease is sized for this long of the recent spend."""
IDLE_SECONDS = 30.0
"""No call for this long: the unspent allowance goes back."""


Triple = list[int]


def _zero() -> Triple:
    return [0, 0, 0]


@dataclass
class Pool:
    """One budget as this sidecar holds it: the spec it was told and its lease."""

    info: BudgetInfo
    prices: dict[str | None, tuple[float, float]]
    window_start: str = ""
    granted: Triple = field(default_factory=_zero)
    consumed: Triple = field(default_factory=_zero)
    returned: Triple = field(default_factory=_zero)
    inflight: Triple = field(default_factory=_zero)
    waiting: Triple = field(default_factory=_zero)
    usage: dict[str, Triple] = field(default_factory=dict)
    renewed: float = -math.inf
    exhausted_until: float = -math.inf
    last_need: Triple = field(default_factory=_zero)
    spent: Triple = field(default_factory=_zero)
    """Needs admitted since the last report (for the spend rate)."""
    last_call: float = -math.inf
    asked: Triple = field(default_factory=_zero)
    """The target of the last report beyond what was needed then (for the low-water mark)."""
    limited: tuple[bool, bool, bool] = (False, False, False)
    """Which units this budget limits (from ``info``, see :meth:`told`)."""
    fail_closed: bool = False

    def __post_init__(self) -> None:
        self.told(self.info, self.prices)

    def told(self, info: BudgetInfo, prices: dict[str | None, tuple[float, float]]) -> None:
        """The budget as the latest answer describes it (read once here, not per call)."""
        self.info, self.prices = info, prices
        self.limited = (info.tokens, info.requests, info.cost)
        self.fail_closed = info.when_ingest_unreachable == WhenUnreachable.FAIL_CLOSED

    def remaining(self, unit: int) -> int:
        """Allowance left to reserve from."""
        held = self.granted[unit] - self.consumed[unit] - self.returned[unit]
        return held - self.inflight[unit]

    def need(self, model: str | None, input_bound: int, output_bound: int) -> Triple | None:
        """What a call reserves here; None if it has no price under a cost limit."""
        cost = 0
        if self.info.cost:
            price = self.prices.get(model) or self.prices.get(None)
            if price is None:
                return None
            cost = math.ceil(input_bound * price[0] + output_bound * price[1])
        return [input_bound + output_bound, 1, cost]

    def fits(self, need: Triple) -> bool:
        """Whether the lease has room for ``need`` on every limited unit (the hot path:
        written out rather than looped)."""
        granted, consumed, returned, inflight = (
            self.granted,
            self.consumed,
            self.returned,
            self.inflight,
        )
        tokens, requests, cost = self.limited
        return (
            (not tokens or granted[0] - consumed[0] - returned[0] - inflight[0] >= need[0])
            and (not requests or granted[1] - consumed[1] - returned[1] - inflight[1] >= need[1])
            and (not cost or granted[2] - consumed[2] - returned[2] - inflight[2] >= need[2])
        )

    def usable(self, mono: float, wall: float) -> bool:
        """The lease is in force: known, its window not over, not expired if FailClosed."""
        if not self.window_start or wall >= self.info.reset_at:
            return False
        return not self.fail_closed or mono - self.renewed <= self.info.lease_seconds

    def reset(self, window_start: str) -> None:
        """A new lease (a new window): nothing granted, spent or given back yet. Calls in
        flight keep their reservations until they end (their usage is not charged here)."""
        self.window_start = window_start
        self.granted, self.consumed, self.returned = _zero(), _zero(), _zero()
        self.usage, self.spent, self.asked = {}, _zero(), _zero()

    def cost_of(self, model: str, input_tokens: int, output_tokens: int) -> int:
        """Millionths of the currency for these tokens (0 without a price)."""
        price = self.prices.get(model) or self.prices.get(None)
        if price is None:
            return 0
        return math.ceil(input_tokens * price[0] + output_tokens * price[1])


@dataclass(frozen=True)
class CallBounds:
    """The worst case of one call, as the request states it."""

    model: str | None
    input_bytes: int
    """Input tokens at most: the request's bytes."""
    output_cap: int | None
    """Output tokens at most per choice (max_tokens ...); None: the policy's default."""
    choices: int = 1


@dataclass(frozen=True)
class Reservation:
    """A call's reservations on each lease (settle or cancel it exactly once)."""

    held: tuple[tuple[Pool, Triple, str], ...]


@dataclass(frozen=True)
class Shortfall:
    """The call needs more than the leases hold (or a lease first): ask the ingest."""

    needs: tuple[tuple[Pool, Triple], ...]


@dataclass(frozen=True)
class Refusal:
    """The call is over a budget: the rule, the HTTP status, when to retry, why."""

    code: str
    status: int
    retry_after: float
    detail: str


Verdict = Reservation | Shortfall | Refusal
NOTHING = Reservation(())


class BudgetBook:
    """Every budget that applies to this sidecar's agent, and its leases."""

    def __init__(self, required: frozenset[str] = frozenset()) -> None:
        self.pools: dict[str, Pool] = {}
        self.required = required
        """``<policy>/<budget>`` of the agent's own policy (its config): calls wait for a
        lease of each, whatever an answer says, until the config says otherwise."""

    @property
    def active(self) -> bool:
        """Whether calls are checked at all (no budget anywhere: a no-op)."""
        return bool(self.pools) or bool(self.required)

    def admit(
        self, call: CallBounds, mono: float, wall: float, final: bool | None = None
    ) -> Verdict:
        """Reserve a call's worst case on every lease (see the module docstring).

        ``final``: an exchange was just tried (True: it answered, False: it failed); what
        still does not fit is refused, as used up or as unavailable.
        """
        if self.required and not self.required <= self.pools.keys():
            # not (yet) in any answer: the first exchange, or an ingest lagging behind
            missing = min(self.required.difference(self.pools))
            return self._unavailable(missing) if final is not None else Shortfall(())
        if not self.pools:
            return NOTHING
        held: list[tuple[Pool, Triple]] = []
        short: list[tuple[Pool, Triple]] = []
        model = call.model
        for pool in self.pools.values():
            out = (
                call.output_cap if call.output_cap is not None else pool.info.output_tokens_per_call
            )
            need = pool.need(model, call.input_bytes, out * call.choices)
            if need is None:
                detail = f"budget {pool.info.budget} has no price for model {model}"
                return Refusal("budget.unpriced", 403, 0.0, detail)
            if pool.usable(mono, wall) and pool.fits(need):
                held.append((pool, need))
            elif pool.exhausted_until > mono and pool.usable(mono, wall):
                return self._exhausted(pool, mono)
            elif final is not None:
                return self._exhausted(pool, mono) if final else self._unavailable(pool.info.budget)
            else:
                short.append((pool, need))
        if short:
            return Shortfall(tuple(short))
        for pool, need in held:
            inflight, spent = pool.inflight, pool.spent
            inflight[0] += need[0]
            inflight[1] += need[1]
            inflight[2] += need[2]
            spent[0] += need[0]
            spent[1] += need[1]
            spent[2] += need[2]
            pool.last_need, pool.last_call = need, mono
        return Reservation(tuple([(pool, need, pool.window_start) for pool, need in held]))

    @staticmethod
    def _exhausted(pool: Pool, mono: float) -> Refusal:
        retry = max(1.0, pool.exhausted_until - mono) if pool.exhausted_until > mono else 1.0
        detail = f"budget {pool.info.budget} is used up for this {pool.info.window.lower()}"
        return Refusal("budget.exhausted", 429, retry, detail)

    @staticmethod
    def _unavailable(budget: str) -> Refusal:
        detail = f"no allowance for budget {budget}: the ingest API could not grant one"
        return Refusal("budget.unavailable", 503, 5.0, detail)

    def track(self) -> Reservation:
        """A call let through over budget (audit mode): nothing reserved, usage still counted
        on every lease in force."""
        return Reservation(tuple((p, _zero(), p.window_start) for p in self.pools.values()
                                 if p.window_start))  # fmt: skip

    def wait(self, shortfall: Shortfall, sign: int) -> None:
        """Count (``sign`` 1) or uncount (-1) a call waiting for an exchange."""
        for pool, need in shortfall.needs:
            for unit in (TOKENS, REQUESTS, COST):
                pool.waiting[unit] = max(0, pool.waiting[unit] + sign * need[unit])

    def settle(
        self, reservation: Reservation, model: str, input_tokens: int, output_tokens: int
    ) -> None:
        """The call was answered: its reservation becomes what it used."""
        for pool, need, window in reservation.held:
            _release(pool, need)
            if window != pool.window_start:
                continue  # the window ended meanwhile: its lease is gone
            key = (
                model if model in pool.usage or len(pool.usage) < MAX_LEASE_MODELS else OTHER_MODEL
            )
            tally = pool.usage.setdefault(key, _zero())
            tally[0] += input_tokens
            tally[1] += output_tokens
            tally[2] += 1
            pool.consumed[TOKENS] += input_tokens + output_tokens
            pool.consumed[REQUESTS] += 1
            pool.consumed[COST] += pool.cost_of(model, input_tokens, output_tokens)

    @staticmethod
    def cancel(reservation: Reservation) -> None:
        """The call never reached the provider: nothing was used."""
        for pool, need, _ in reservation.held:
            _release(pool, need)

    # -- the exchange ------------------------------------------------------------------

    def reports(self, mono: float, closing: bool = False) -> list[dict[str, Any]]:
        """One lease report per budget (wire shape); gives back what an idle lease holds."""
        out = []
        for ref, pool in self.pools.items():
            busy = any(pool.inflight) or any(pool.waiting)
            idle = mono - pool.last_call >= IDLE_SECONDS and not busy
            if (idle or closing) and pool.window_start:
                for unit in (TOKENS, REQUESTS, COST):
                    pool.returned[unit] += max(0, pool.remaining(unit))
            minimum = [
                pool.consumed[u] + pool.returned[u] + pool.inflight[u] + pool.waiting[u]
                for u in (TOKENS, REQUESTS, COST)
            ]
            extra = [0, 0, 0] if idle or closing else self._extra(pool, mono)
            target = [minimum[u] + extra[u] for u in (TOKENS, REQUESTS, COST)]
            pool.asked = extra
            report: dict[str, Any] = {
                "budget": ref,
                "usage": [
                    {"model": m, "inputTokens": t[0], "outputTokens": t[1], "requests": t[2]}
                    for m, t in pool.usage.items()
                ],
                "target": _wire(target, pool.limited),
                "minimum": _wire(minimum, pool.limited),
                "returned": _wire(pool.returned, pool.limited),
                "close": closing,
            }
            if pool.window_start:
                report["windowStart"] = pool.window_start
            out.append(report)
        return out

    @staticmethod
    def _extra(pool: Pool, mono: float) -> Triple:
        """Allowance beyond what is needed now: about HORIZON_SECONDS of the recent spend,
        at least two more calls like the last (or like the one waiting)."""
        span = max(1.0, mono - pool.renewed) if pool.renewed > -math.inf else 1.0
        extra = [
            max(
                2 * pool.last_need[u],
                2 * pool.waiting[u],
                math.ceil(pool.spent[u] / span * HORIZON_SECONDS),
            )
            for u in (TOKENS, REQUESTS, COST)
        ]
        pool.spent = _zero()
        return extra

    def apply(self, answer: AllowanceResponse, mono: float) -> None:
        """Take the ingest's answer: the budgets that apply, and each lease as stored."""
        infos = {info.budget: info for info in answer.budgets}
        for ref in [r for r in self.pools if r not in infos]:
            del self.pools[ref]  # no longer applies (in-flight reservations just lapse)
        for ref, info in infos.items():
            pool = self.pools.get(ref)
            prices = {p.model: (p.input_per_million, p.output_per_million) for p in info.prices}
            if pool is None:
                self.pools[ref] = Pool(info, prices)
            else:
                pool.told(info, prices)
        for state in answer.leases:
            pool = self.pools.get(state.budget)
            if pool is None or state.unknown:
                continue
            if state.window_start != pool.window_start:  # a new window (or a first lease)
                pool.reset(state.window_start)
            granted = (state.granted.tokens, state.granted.requests, state.granted.cost)
            pool.granted = [max(a, b) for a, b in zip(pool.granted, granted, strict=True)]
            pool.renewed = mono
            pool.exhausted_until = mono + state.retry_after if state.exhausted else -math.inf

    def due(self, mono: float, wall: float) -> bool:
        """Whether an exchange is due now (see :class:`~.allowance.Allowance`)."""
        for pool in self.pools.values():
            recent = mono - pool.last_call < IDLE_SECONDS
            if any(pool.waiting):
                return True
            if not recent:
                limited = [u for u in (TOKENS, REQUESTS, COST) if pool.limited[u]]
                if pool.window_start and any(pool.remaining(u) > 0 for u in limited):
                    return True  # idle: give the allowance back
                continue
            if mono - pool.renewed >= pool.info.lease_seconds / 2:
                return True
            if not pool.usable(mono, wall) and mono - pool.renewed >= 1.0:
                return True  # e.g. its window ended: the next lease, asked at most once a second
            if any(_low(pool, u) for u in (TOKENS, REQUESTS, COST)):
                return True
        return False


def _low(pool: Pool, unit: int) -> bool:
    """Below the low-water mark: a quarter of the last extra asked, or two calls."""
    mark = max(pool.asked[unit] // 4, 2 * pool.last_need[unit])
    return pool.limited[unit] and pool.remaining(unit) < mark


def _release(pool: Pool, need: Triple) -> None:
    inflight = pool.inflight
    inflight[0] = max(0, inflight[0] - need[0])
    inflight[1] = max(0, inflight[1] - need[1])
    inflight[2] = max(0, inflight[2] - need[2])


def _wire(values: Triple, limited: tuple[bool, bool, bool]) -> dict[str, int]:
    return {name: values[u] if limited[u] else 0 for u, name in enumerate(UNIT_NAMES)}
