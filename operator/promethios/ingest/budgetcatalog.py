"""Which budgets exist, where each is kept, and which apply to an agent (pure).

Fed with GovernancePolicies by the cluster watch (parsed with the API model). A budget is
kept, in ``status.usage``, by its *owner*:

- scope ``Agent``: each GovernedAgent using the policy keeps its own (one per agent);
- scope ``Policy``: the GovernancePolicy keeps one shared by the agents using it;
- scope ``Namespace``: the GovernancePolicy keeps one shared by every agent of its
  namespace, whatever policy each of them uses.

An agent is held back by every budget of its own policy and by every ``Namespace`` budget
of the other policies in its namespace. Budgets are named ``<policy>/<budget>`` on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pydantic

from ..api.budget import Budget, BudgetOptions, BudgetScope, Pricing
from ..api.policy import GovernancePolicySpec
from .agents import AgentConfig

log = logging.getLogger(__name__)

AGENT_KIND = "GovernedAgent"
POLICY_KIND = "GovernancePolicy"


class Owner(NamedTuple):
    """The object whose ``status.usage`` keeps a budget."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class PolicyBudgets:
    """A GovernancePolicy's budgets, prices and options."""

    namespace: str
    name: str
    budgets: tuple[Budget, ...] = ()
    pricing: Pricing | None = None
    options: BudgetOptions = field(default_factory=BudgetOptions)

    @property
    def currency(self) -> str:
        """The currency of its cost figures."""
        return self.pricing.currency if self.pricing is not None else "USD"


@dataclass(frozen=True)
class Pool:
    """One budget as it applies to one agent: where it is kept, under which spec."""

    ref: str
    """``<policy>/<budget>``."""
    owner: Owner
    budget: Budget
    policy: PolicyBudgets


def policy_budgets(obj: Mapping[str, Any]) -> PolicyBudgets:
    """The budgets of a GovernancePolicy body (none if its spec does not parse)."""
    metadata = obj.get("metadata") or {}
    namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
    try:
        spec = GovernancePolicySpec.model_validate(obj.get("spec") or {})
    except pydantic.ValidationError as error:
        log.warning("GovernancePolicy %s/%s does not parse (%d errors); no budgets from it",
                    namespace, name, error.error_count())  # fmt: skip
        return PolicyBudgets(namespace, name)
    return PolicyBudgets(namespace, name, tuple(spec.budgets), spec.pricing, spec.budget_options)


class BudgetCatalog:
    """Every known policy's budgets; answers which apply to an agent and what an owner keeps."""

    def __init__(self) -> None:
        self.policies: dict[str, PolicyBudgets] = {}

    def put(self, policy: PolicyBudgets) -> bool:
        """Add or replace a policy's budgets; True if they changed."""
        key = f"{policy.namespace}/{policy.name}"
        changed = self.policies.get(key) != policy
        self.policies[key] = policy
        return changed

    def remove(self, namespace: str, name: str) -> None:
        """A policy was deleted."""
        self.policies.pop(f"{namespace}/{name}", None)

    def pools_for(self, config: AgentConfig) -> dict[str, Pool]:
        """Every budget that holds the agent back, by ``<policy>/<budget>``."""
        pools: dict[str, Pool] = {}
        own = self.policies.get(config.policy_key)
        if own is not None:
            for budget in own.budgets:
                pools[f"{own.name}/{budget.name}"] = Pool(
                    f"{own.name}/{budget.name}", _owner(own, budget, config), budget, own
                )
        for key, policy in self.policies.items():
            if policy.namespace != config.namespace or key == config.policy_key:
                continue
            for budget in policy.budgets:
                if budget.scope == BudgetScope.NAMESPACE:
                    ref = f"{policy.name}/{budget.name}"
                    pools[ref] = Pool(ref, _owner(policy, budget, config), budget, policy)
        return pools

    def kept_by(
        self, owner: Owner, agent_policy: str | None = None
    ) -> tuple[PolicyBudgets | None, tuple[Budget, ...]]:
        """The policy and budgets whose usage ``owner`` keeps.

        For a GovernedAgent, ``agent_policy`` is the name of its policy (None: unknown).
        """
        if owner.kind == POLICY_KIND:
            policy = self.policies.get(f"{owner.namespace}/{owner.name}")
            if policy is None:
                return None, ()
            shared = tuple(b for b in policy.budgets if b.scope != BudgetScope.AGENT)
            return policy, shared
        policy = self.policies.get(f"{owner.namespace}/{agent_policy}") if agent_policy else None
        if policy is None:
            return None, ()
        return policy, tuple(b for b in policy.budgets if b.scope == BudgetScope.AGENT)


def _owner(policy: PolicyBudgets, budget: Budget, config: AgentConfig) -> Owner:
    if budget.scope == BudgetScope.AGENT:
        return Owner(AGENT_KIND, config.namespace, config.name)
    return Owner(POLICY_KIND, policy.namespace, policy.name)
