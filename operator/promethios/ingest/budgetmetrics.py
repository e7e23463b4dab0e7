"""Prometheus metrics of budgets, on the ingest API's registry.

Names (``unit`` is ``tokens``, ``requests`` or ``cost``; cost in the budget's currency):

- ``promethios_budget_used{namespace,owner_kind,owner,budget,unit}``      spent in the window
- ``promethios_budget_limit{...}``                                        the limit (limited units)
- ``promethios_budget_reserved{...}``                                     held by sidecar leases
- ``promethios_budget_reset_timestamp_seconds{namespace,owner_kind,owner,budget}``
- ``promethios_budget_model_tokens{namespace,owner_kind,owner,budget,model,token_type}``
  tokens by model (at most 32 models per budget, then ``other``) and type (input | output)
- ``promethios_budget_allowance_requests_total{result}``  exchanges: ok | exhausted (a lease got
  less than it wanted) | unavailable (the usage write failed: 503)
- ``promethios_budget_usage_writes_total{result}``        ok | conflict (409, re-read) | error
- ``promethios_budget_alerts_total{threshold}``           threshold alerts decided

The gauges are computed at scrape time from the ledgers this replica last read or wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..api.budget import from_micro
from .ledger import UNITS
from .usagewriter import OwnerBook

LABELS = ["namespace", "owner_kind", "owner", "budget"]


class _LedgerCollector(Collector):
    def __init__(self, books: Callable[[], Iterable[OwnerBook]]) -> None:
        self._books = books

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily(
            "promethios_budget_used", "Spent in the window.", labels=[*LABELS, "unit"]
        )
        limit = GaugeMetricFamily(
            "promethios_budget_limit", "Limit per window.", labels=[*LABELS, "unit"]
        )
        reserved = GaugeMetricFamily(
            "promethios_budget_reserved", "Held back by sidecar leases.", labels=[*LABELS, "unit"]
        )
        reset = GaugeMetricFamily(
            "promethios_budget_reset_timestamp_seconds", "When the window ends.", labels=LABELS
        )
        models = GaugeMetricFamily(
            "promethios_budget_model_tokens",
            "Tokens by model and type in the window.",
            labels=[*LABELS, "model", "token_type"],
        )
        for book in list(self._books()):
            owner = book.owner
            for ledger in list(book.ledgers.values()):
                key = [owner.namespace, owner.kind, owner.name, ledger.name]
                held = ledger.reserved()
                for unit in UNITS:
                    scale = from_micro if unit == "cost" else float
                    used.add_metric([*key, unit], scale(ledger.used.get(unit)))
                    reserved.add_metric([*key, unit], scale(held.get(unit)))
                    if (value := ledger.limits.get(unit)) is not None:
                        limit.add_metric([*key, unit], scale(value))
                reset.add_metric(key, ledger.end)
                for model, tally in ledger.by_model.items():
                    models.add_metric([*key, model, "input"], tally.input)
                    models.add_metric([*key, model, "output"], tally.output)
        yield from (used, limit, reserved, reset, models)


class BudgetMetrics:
    """The budget counters, and the ledger gauges registered on ``registry``."""

    def __init__(
        self, registry: CollectorRegistry, books: Callable[[], Iterable[OwnerBook]]
    ) -> None:
        self.exchanges = Counter(
            "promethios_budget_allowance_requests",
            "Allowance exchanges by result.",
            ["result"],
            registry=registry,
        )
        self.writes = Counter(
            "promethios_budget_usage_writes",
            "Budget usage writes by result.",
            ["result"],
            registry=registry,
        )
        self.alerts = Counter(
            "promethios_budget_alerts",
            "Budget threshold alerts decided.",
            ["threshold"],
            registry=registry,
        )
        registry.register(_LedgerCollector(books))
