"""The allowance exchange: a sidecar's lease reports in, the budgets' state out.

:meth:`AllowanceService.exchange` finds every budget that applies to the agent
(:mod:`.budgetcatalog`), turns each reported lease into a :class:`~.ledger.LeaseOp`
(the lease is the sidecar instance's: ``<agent>.<instance>``), hands them to the usage
writer grouped by owner object, and answers once every write succeeded, with the lease
figures as written and the spec of every applicable budget (so a sidecar learns of a
budget it did not know, e.g. a ``Namespace`` budget of another policy).

Thresholds crossed by a write become alerts to AlertSinks (:meth:`on_crossed`): the
budget's own ``alertSinks``, else the agent's; once per window, never deduplicated away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..api.allowance import (
    AllowanceRequest,
    AllowanceResponse,
    BudgetInfo,
    LeaseReport,
    LeaseState,
    Price,
    WireAmounts,
)
from ..api.budget import Budget, from_micro, window_bounds
from .agents import AgentConfig
from .alertformat import BUDGET_KIND, Alert
from .budgetcatalog import BudgetCatalog, Owner, PolicyBudgets, Pool
from .budgetmetrics import BudgetMetrics
from .codec import epoch, rfc3339
from .ledger import UNITS, LeaseOp, LeaseOutcome, Ledger, Units
from .usagewriter import UsageWriter

AlertSubmit = Callable[[Alert, tuple[str, ...]], None]


def lease_op(lease_id: str, report: LeaseReport) -> LeaseOp:
    """The ledger operation of one reported lease."""
    return LeaseOp(
        lease_id,
        epoch(report.window_start),
        tuple((m.model, m.input_tokens, m.output_tokens, m.requests) for m in report.usage),
        _units(report.target),
        _units(report.returned),
        report.close,
        _units(report.minimum) if report.minimum is not None else None,
    )


def _units(amounts: WireAmounts) -> Units:
    return Units(amounts.tokens, amounts.requests, amounts.cost)


def _wire(units: Units) -> WireAmounts:
    return WireAmounts(tokens=units.tokens, requests=units.requests, cost=units.cost)


class AllowanceService:
    """Exchanges and threshold alerts; one per ingest process."""

    def __init__(
        self,
        catalog: BudgetCatalog,
        writer: UsageWriter,
        metrics: BudgetMetrics,
        clock: Callable[[], float],
        submit_alert: AlertSubmit,
        trust_of: Callable[[str], float],
        timeout: float = 10.0,
    ) -> None:
        self.catalog = catalog
        self.writer = writer
        self.metrics = metrics
        self.clock = clock
        self.timeout = timeout
        self._submit_alert = submit_alert
        self._trust_of = trust_of

    async def exchange(self, config: AgentConfig, request: AllowanceRequest) -> AllowanceResponse:
        """Apply the reported leases and answer (StatusWriteError if a write failed)."""
        pools = self.catalog.pools_for(config)
        lease_id = f"{config.name}.{request.instance}"
        answers: list[LeaseState | None] = [None] * len(request.leases)
        grouped: dict[Owner, list[tuple[int, Pool, LeaseOp]]] = {}
        for index, report in enumerate(request.leases):
            pool = pools.get(report.budget)
            if pool is None:
                answers[index] = LeaseState(
                    budget=report.budget, window_start="", granted=WireAmounts(),
                    consumed=WireAmounts(), returned=WireAmounts(), unknown=True,
                )  # fmt: skip
                continue
            grouped.setdefault(pool.owner, []).append((index, pool, lease_op(lease_id, report)))
        try:
            results = await asyncio.gather(
                *(
                    self.writer.submit(
                        owner, [(p.budget.name, op) for _, p, op in items], config, self.timeout
                    )
                    for owner, items in grouped.items()
                )
            )
        except Exception:
            self.metrics.exchanges.labels("unavailable").inc()
            raise
        windows: dict[str, tuple[float, float]] = {}
        for items, outcomes in zip(grouped.values(), results, strict=True):
            for (index, pool, _), outcome in zip(items, outcomes, strict=True):
                answers[index] = self._state(pool, outcome)
                if outcome is not None:
                    windows[pool.ref] = (outcome.window_start, outcome.window_end)
        exhausted = any(a is not None and a.exhausted for a in answers)
        self.metrics.exchanges.labels("exhausted" if exhausted else "ok").inc()
        now = self.clock()
        return AllowanceResponse(
            budgets=[self._info(pool, windows.get(ref), now) for ref, pool in pools.items()],
            leases=[a for a in answers if a is not None],
        )

    @staticmethod
    def _state(pool: Pool, outcome: LeaseOutcome | None) -> LeaseState:
        if outcome is None:
            return LeaseState(
                budget=pool.ref, window_start="", granted=WireAmounts(), consumed=WireAmounts(),
                returned=WireAmounts(), unknown=True,
            )  # fmt: skip
        return LeaseState(
            budget=pool.ref,
            window_start=rfc3339(outcome.window_start) or "",
            granted=_wire(outcome.granted),
            consumed=_wire(outcome.consumed),
            returned=_wire(outcome.returned),
            exhausted=outcome.exhausted,
            retry_after=round(outcome.retry_after, 3),
        )

    def _info(self, pool: Pool, window: tuple[float, float] | None, now: float) -> BudgetInfo:
        budget, policy = pool.budget, pool.policy
        if window is None:
            book = self.writer.books.get(pool.owner)
            ledger = book.ledgers.get(budget.name) if book is not None else None
            stored = (ledger.start, ledger.end) if ledger is not None and ledger.end > now else None
            window = stored or window_bounds(str(budget.window), now)
        return BudgetInfo(
            budget=pool.ref,
            scope=budget.scope,
            window=budget.window,
            window_start=rfc3339(window[0]) or "",
            reset_at=window[1],
            tokens=budget.tokens is not None,
            requests=budget.requests is not None,
            cost=budget.cost is not None,
            prices=_prices(policy) if budget.cost is not None else [],
            when_ingest_unreachable=budget.when_ingest_unreachable,
            lease_seconds=policy.options.lease_seconds,
            output_tokens_per_call=policy.options.output_tokens_per_call,
        )

    # -- alerts -----------------------------------------------------------------------------

    def on_crossed(
        self,
        owner: Owner,
        ledger: Ledger,
        budget: Budget,
        policy: PolicyBudgets,
        thresholds: list[int],
        agent: AgentConfig | None,
    ) -> None:
        """Alert each threshold a successful write crossed (once per window, by design)."""
        sinks = tuple(ref.name for ref in budget.alert_sinks) or (
            agent.alert_sinks if agent is not None else ()
        )
        who = agent.name if agent is not None else owner.name
        trust = self._trust_of(f"{owner.namespace}/{who}")
        now = rfc3339(self.clock()) or ""
        figures = _figures(ledger, policy.currency)
        for threshold in thresholds:
            self.metrics.alerts.labels(str(threshold)).inc()
            text = (
                f"budget {budget.name} of {owner.kind} {owner.namespace}/{owner.name} reached "
                f"{threshold}% of its {str(budget.window).lower()} limit ({figures}); "
                f"resets at {rfc3339(ledger.end)}"
            )
            details = (
                ("name", budget.name), ("scope", str(budget.scope)),
                ("owner", f"{owner.kind}/{owner.name}"), ("window", str(budget.window)),
                ("windowStart", rfc3339(ledger.start)), ("resetAt", rfc3339(ledger.end)),
                ("threshold", threshold), ("percent", ledger.percent()),
                ("currency", policy.currency),
            )  # fmt: skip
            alert = Alert(
                owner.namespace,
                who,
                f"budget-{owner.name}-{budget.name}-{int(ledger.start)}-{threshold}",
                f"budget.{budget.name}.{threshold}",
                str(budget.alert_severity),
                text,
                now,
                trust,
                kind=BUDGET_KIND,
                budget=details,
            )
            self._submit_alert(alert, sinks)


def _prices(policy: PolicyBudgets) -> list[Price]:
    pricing = policy.pricing
    if pricing is None:
        return []
    prices = [
        Price(model=p.model, input_per_million=p.input_per_million,
              output_per_million=p.output_per_million)
        for p in pricing.models
    ]  # fmt: skip
    if pricing.default is not None:
        default = pricing.default
        prices.append(Price(input_per_million=default.input_per_million,
                            output_per_million=default.output_per_million))  # fmt: skip
    return prices


def _figures(ledger: Ledger, currency: str) -> str:
    parts = []
    for unit in UNITS:
        limit = ledger.limits.get(unit)
        if limit is None:
            continue
        if unit == "cost":
            used = f"{from_micro(ledger.used.cost):.2f}"
            parts.append(f"cost {used} of {from_micro(limit):.2f} {currency}")
        else:
            parts.append(f"{unit} {ledger.used.get(unit)} of {limit}")
    return ", ".join(parts)
