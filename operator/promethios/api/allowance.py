"""The allowance exchange between a sidecar and the ingest API (an extension of the seed).

``POST /api/v1/budgets/allowance`` with the same headers as every report. A sidecar
instance holds one lease per budget that applies to its agent and reports, per lease,
figures that only grow over the window (cumulative): what it used by model, what it wants
granted in total (``target``), what it gives back (``returned``). The ingest applies the
larger of the stored and the reported figures, so a retry, a replay to another replica or
a reordering never counts anything twice (see :mod:`promethios.ingest.ledger`). The answer
lists every budget that applies to the agent and the state of each lease.

Cost is on the wire in millionths of the budget's currency (integers).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from .budget import MAX_LEASE_MODELS, BudgetScope, BudgetWindow, WhenUnreachable
from .wire import PATH_ALLOWANCE, AgentId, WireModel, WireTime

__all__ = ["PATH_ALLOWANCE", "AllowanceRequest", "AllowanceResponse"]
BUDGET_REF = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""``<policy>/<budget>``: a budget of a GovernancePolicy in the agent's namespace."""
INSTANCE_PATTERN = r"^[A-Za-z0-9-]{8,64}$"
MAX_LEASE_REPORTS = 32
Big = Annotated[int, Field(ge=0, le=10**15)]


class WireAmounts(WireModel):
    """Tokens, requests and cost (millionths of the currency)."""

    tokens: Big = 0
    requests: Big = 0
    cost: Big = 0


class ModelTokens(WireModel):
    """Cumulative usage of one model under one lease."""

    model: str = Field(min_length=1, max_length=256)
    input_tokens: Big = Field(0, alias="inputTokens")
    output_tokens: Big = Field(0, alias="outputTokens")
    requests: Big = 0


class LeaseReport(WireModel):
    """One lease: cumulative usage, the total wanted, what is given back."""

    budget: str = Field(pattern=BUDGET_REF, max_length=317)
    window_start: WireTime | None = Field(
        None, alias="windowStart", description="The lease's window; absent: a new lease."
    )
    usage: list[ModelTokens] = Field(default_factory=list, max_length=MAX_LEASE_MODELS)
    target: WireAmounts = Field(default_factory=WireAmounts)
    minimum: WireAmounts | None = Field(
        None,
        description="The part of target needed now (spent, in flight, waiting); the rest is "
        "granted only up to half of what the budget has left, so one sidecar cannot take all. "
        "Absent: all of target is needed now.",
    )
    returned: WireAmounts = Field(default_factory=WireAmounts)
    close: bool = False


class AllowanceRequest(WireModel):
    """``POST /api/v1/budgets/allowance``."""

    agent_id: AgentId = Field(alias="agentId")
    instance: str = Field(pattern=INSTANCE_PATTERN, description="The sidecar instance.")
    leases: list[LeaseReport] = Field(default_factory=list, max_length=MAX_LEASE_REPORTS)


class Price(BaseModel):
    """A model's token prices per million (currency units)."""

    model: str | None = None
    input_per_million: float = Field(alias="inputPerMillion")
    output_per_million: float = Field(alias="outputPerMillion")

    model_config = {"populate_by_name": True}


class BudgetInfo(BaseModel):
    """A budget that applies to the agent: how its sidecar must hold it back."""

    model_config = {"populate_by_name": True}

    budget: str
    scope: BudgetScope
    window: BudgetWindow
    window_start: str = Field(alias="windowStart")
    reset_at: float = Field(alias="resetAt", description="Epoch seconds (UTC).")
    tokens: bool = Field(description="Tokens are limited.")
    requests: bool = Field(description="Requests are limited.")
    cost: bool = Field(description="Cost is limited.")
    prices: list[Price] = Field(default_factory=list)
    when_ingest_unreachable: WhenUnreachable = Field(alias="whenIngestUnreachable")
    lease_seconds: int = Field(alias="leaseSeconds")
    output_tokens_per_call: int = Field(alias="outputTokensPerCall")


class LeaseState(BaseModel):
    """A lease as stored after this exchange (cumulative figures)."""

    model_config = {"populate_by_name": True}

    budget: str
    window_start: str = Field(alias="windowStart")
    granted: WireAmounts
    consumed: WireAmounts
    returned: WireAmounts
    exhausted: bool = Field(
        False, description="Less was granted than needed at once (minimum): the budget is spent."
    )
    retry_after: float = Field(0.0, alias="retryAfter", description="When asking again may help.")
    unknown: bool = Field(False, description="No such budget applies to the agent (any more).")


class AllowanceResponse(BaseModel):
    """The answer: the budgets that apply, and each reported lease."""

    model_config = {"populate_by_name": True}

    budgets: list[BudgetInfo] = Field(default_factory=list)
    leases: list[LeaseState] = Field(default_factory=list)
