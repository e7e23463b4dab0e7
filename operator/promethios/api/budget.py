"""Budgets: what a GovernancePolicy may spend per window, and the usage written back.

Spec side (in ``GovernancePolicy.spec``): :class:`Budget` (a limit in tokens, requests
and/or currency per calendar window, with a scope), :class:`Pricing` (token prices per
model, so a budget can be in currency) and :class:`BudgetOptions`. Status side
(``status.usage`` of a GovernedAgent for ``Agent`` budgets, of the GovernancePolicy for
shared ones): :class:`UsageStatus`, written by the ingest API with its own field manager.

Windows are calendar-aligned in UTC (:func:`window_bounds`): a ``Day`` budget resets at
00:00 UTC, a ``Month`` budget on the 1st at 00:00 UTC. Pure; standard library and pydantic.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from .common import LocalObjectReference, Model, Severity, api_config

BUDGET_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_BUDGETS = 8
MAX_LEASES = 128
"""Leases one budget keeps in its status (one per sidecar instance in the window)."""
MAX_LEASE_MODELS = 8
MAX_MODELS = 32
"""Models a budget's usage is broken down by; later ones count as ``other``."""
OTHER_MODEL = "other"
DEFAULT_THRESHOLDS = (80, 95, 100)
MICRO = 1_000_000
"""Cost is counted in millionths of the currency unit (integers, no rounding drift)."""


class BudgetScope(StrEnum):
    """Whose calls a budget counts and holds back."""

    AGENT = "Agent"
    POLICY = "Policy"
    NAMESPACE = "Namespace"


class BudgetWindow(StrEnum):
    """The calendar window a budget resets with (UTC)."""

    MINUTE = "Minute"
    HOUR = "Hour"
    DAY = "Day"
    MONTH = "Month"


class WhenUnreachable(StrEnum):
    """What a sidecar does when the ingest API cannot renew its lease."""

    FAIL_OPEN = "FailOpen"
    FAIL_CLOSED = "FailClosed"


Threshold = Annotated[int, Field(ge=1, le=1000, description="A percentage of the limit.")]


class Budget(Model):
    """A limit per calendar window: tokens, requests and/or cost (at least one)."""

    model_config = api_config(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.tokens) || has(self.requests) || has(self.cost)",
                    "message": "a budget needs at least one of tokens, requests or cost",
                    "reason": "FieldValueRequired",
                },
            ]
        }
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=BUDGET_NAME, description="Budget name (DNS label)."
    )
    scope: BudgetScope = Field(
        BudgetScope.AGENT,
        description=(
            "Agent: each agent using the policy has its own budget (all its replicas together). "
            "Policy: one budget shared by every agent using the policy. Namespace: one budget "
            "shared by every agent in the namespace, whatever its policy."
        ),
    )
    window: BudgetWindow = Field(
        BudgetWindow.MONTH, description="Minute, Hour, Day or Month; resets at its start (UTC)."
    )
    tokens: int | None = Field(None, ge=1, le=10**13, description="Tokens per window.")
    requests: int | None = Field(None, ge=1, le=10**12, description="Model calls per window.")
    cost: float | None = Field(
        None,
        ge=0.000001,
        le=10**9,
        allow_inf_nan=False,
        description="Spend per window in spec.pricing.currency (needs spec.pricing).",
    )
    when_ingest_unreachable: WhenUnreachable = Field(
        WhenUnreachable.FAIL_OPEN,
        description=(
            "FailOpen: a sidecar that cannot renew its lease keeps spending that lease (only). "
            "FailClosed: it refuses calls once the lease is older than leaseSeconds."
        ),
    )
    alert_thresholds: list[Threshold] = Field(
        default_factory=lambda: list(DEFAULT_THRESHOLDS),
        max_length=10,
        description="Percentages of the limit that alert once per window.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    alert_severity: Severity = Field(Severity.HIGH, description="Severity of the alerts.")
    alert_sinks: list[LocalObjectReference] = Field(
        default_factory=list,
        max_length=16,
        description="AlertSinks for this budget's alerts; empty: the agent's own sinks.",
    )

    @model_validator(mode="after")
    def _has_a_limit(self) -> Budget:
        if self.tokens is None and self.requests is None and self.cost is None:
            raise ValueError("a budget needs at least one of tokens, requests or cost")
        return self


class TokenPrice(Model):
    """Price of a model's tokens, per million, in the policy's currency."""

    input_per_million: float = Field(
        ge=0, le=1_000_000, allow_inf_nan=False, description="Price of a million input tokens."
    )
    output_per_million: float = Field(
        ge=0, le=1_000_000, allow_inf_nan=False, description="Price of a million output tokens."
    )


class ModelPrice(TokenPrice):
    """Token prices of one model."""

    model: str = Field(
        min_length=1, max_length=256, description="Model name as the agent sends it."
    )


class Pricing(Model):
    """Token prices per model, so that budgets can be in currency."""

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.")
    models: list[ModelPrice] = Field(
        default_factory=list,
        max_length=64,
        description="Prices per model.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["model"],
        },
    )
    default: TokenPrice | None = Field(
        None,
        description="Price of models not listed; unset: such calls are refused by cost budgets.",
    )

    def price(self, model: str | None) -> TokenPrice | None:
        """The price of ``model`` (its own, else the default), None if it has none."""
        for item in self.models:
            if item.model == model:
                return item
        return self.default


class BudgetOptions(Model):
    """How sidecars hold budgets back: what one call reserves, how long a lease lasts."""

    output_tokens_per_call: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description=(
            "Output tokens a call reserves when it sets no max_tokens / max_completion_tokens; "
            "a call that produces more overshoots by the difference."
        ),
    )
    lease_seconds: int = Field(
        60, ge=10, le=3600, description="How long a lease holds without renewal (FailClosed)."
    )


# -- windows --------------------------------------------------------------------------------

_SECONDS = {BudgetWindow.MINUTE: 60, BudgetWindow.HOUR: 3600, BudgetWindow.DAY: 86400}


def window_bounds(window: str, moment: float) -> tuple[float, float]:
    """Start and end (epoch seconds, UTC) of the ``window`` holding ``moment``."""
    if window == BudgetWindow.MONTH:
        at = datetime.fromtimestamp(moment, UTC)
        start = datetime(at.year, at.month, 1, tzinfo=UTC)
        end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
        return start.timestamp(), end.timestamp()
    length = _SECONDS[BudgetWindow(window)]
    start_s = math.floor(moment / length) * length
    return float(start_s), float(start_s + length)


def to_micro(cost: float) -> int:
    """Currency units to millionths."""
    return round(cost * MICRO)


def from_micro(micro: int) -> float:
    """Millionths to currency units (six decimals)."""
    return round(micro / MICRO, 6)


# -- status -----------------------------------------------------------------------------------

Count = Annotated[int, Field(ge=0, description="A count.")]


class StatusModel(Model):
    """Base of the usage models: built on first use, not at import (the sidecar, which
    imports the policy model, never reads a status; it saves its memory)."""

    model_config = api_config(defer_build=True)


class Amounts(StatusModel):
    """Tokens, requests and cost (in the policy's currency)."""

    tokens: int = Field(0, ge=0, description="Tokens.")
    requests: int = Field(0, ge=0, description="Model calls.")
    cost: float = Field(0.0, ge=0, description="Cost in the budget's currency.")


class UsedAmounts(Amounts):
    """What was spent: tokens (input and output), requests and cost."""

    input_tokens: int = Field(0, ge=0, description="Input (prompt) tokens.")
    output_tokens: int = Field(0, ge=0, description="Output (completion) tokens.")


class BudgetLimits(StatusModel):
    """The limits in force (unset: no limit on that unit)."""

    tokens: int | None = Field(None, ge=1, description="Tokens per window.")
    requests: int | None = Field(None, ge=1, description="Model calls per window.")
    cost: float | None = Field(None, ge=0.000001, description="Cost per window.")


class ModelUsage(StatusModel):
    """Usage of one model in the window."""

    model: str = Field(min_length=1, max_length=256, description="Model name (or other).")
    input_tokens: int = Field(0, ge=0, description="Input tokens.")
    output_tokens: int = Field(0, ge=0, description="Output tokens.")
    requests: int = Field(0, ge=0, description="Model calls.")
    cost: float = Field(0.0, ge=0, description="Cost.")


class LeaseModelUsage(StatusModel):
    """What one lease holder reported for one model (cumulative over the window)."""

    model: str = Field(min_length=1, max_length=256, description="Model name.")
    input_tokens: int = Field(0, ge=0, description="Input tokens.")
    output_tokens: int = Field(0, ge=0, description="Output tokens.")
    requests: int = Field(0, ge=0, description="Model calls.")


class Lease(StatusModel):
    """An allowance granted to one sidecar instance in the window (cumulative figures)."""

    id: str = Field(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$", description="Holder."
    )
    granted: Amounts = Field(default_factory=Amounts, description="Allowance granted so far.")
    consumed: Amounts = Field(default_factory=Amounts, description="Reported spent so far.")
    returned: Amounts = Field(default_factory=Amounts, description="Given back unspent.")
    usage: list[LeaseModelUsage] = Field(
        default_factory=list, max_length=MAX_LEASE_MODELS, description="Reported usage by model."
    )
    updated: datetime = Field(description="When the holder last reported.")
    closed: bool = Field(False, description="The holder stopped and gave back the rest.")


class BudgetUsage(StatusModel):
    """One budget in its current window: limit, spend, allowance held by sidecars."""

    name: str = Field(min_length=1, max_length=63, description="The budget's name.")
    scope: BudgetScope = Field(description="Agent, Policy or Namespace.")
    window: BudgetWindow = Field(description="Minute, Hour, Day or Month.")
    window_start: datetime = Field(description="Start of the current window (UTC).")
    reset_at: datetime = Field(description="When the window ends and usage resets.")
    currency: str = Field("USD", max_length=3, description="Currency of the cost figures.")
    limit: BudgetLimits = Field(default_factory=BudgetLimits, description="Limits in force.")
    used: UsedAmounts = Field(default_factory=UsedAmounts, description="Spent in this window.")
    reserved: Amounts = Field(
        default_factory=Amounts, description="Granted to sidecars and not yet spent or returned."
    )
    percent: int = Field(0, ge=0, description="Highest used/limit of the limited units, in %.")
    by_model: list[ModelUsage] = Field(
        default_factory=list,
        max_length=MAX_MODELS + 1,
        description="Spend by model.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["model"],
        },
    )
    leases: list[Lease] = Field(
        default_factory=list,
        max_length=MAX_LEASES,
        description="Allowances held by sidecar instances.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )
    alerted: list[Count] = Field(
        default_factory=list,
        max_length=10,
        description="Thresholds already alerted in this window.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class UsageStatus(StatusModel):
    """Budget usage, written by the ingest API (field manager promethios-budgets)."""

    budgets: list[BudgetUsage] = Field(
        default_factory=list,
        max_length=MAX_BUDGETS,
        description="One entry per budget held here.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    summary: str = Field(
        "", max_length=16, description="The highest budget percentage, for kubectl's column."
    )
    updated_at: datetime | None = Field(None, description="When the ingest API last wrote it.")
