"""What the ingest API knows of a GovernedAgent: the parsed resource and its policy's scoring.

GovernedAgents and GovernancePolicies are parsed with the same pydantic models as the
controller uses (:func:`promethios.api.agent.parse_agent`), so every default — heartbeat
interval, missed beats before stale, trust threshold, breach action, trust weights —
comes from :mod:`promethios.api` and from nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from ..api.agent import Agent, parse_agent
from ..api.enforcement import BreachAction
from ..api.governedagent import Governance
from ..api.policy import GovernancePolicySpec, TrustScoring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """One GovernedAgent as the ingest API uses it (everything typed, nothing re-defaulted)."""

    agent: Agent
    scoring: TrustScoring = field(default_factory=TrustScoring)
    """Trust weights and recovery from the agent's GovernancePolicy (its defaults if absent)."""

    @property
    def agent_id(self) -> str:
        """``<namespace>/<name>``, the wire contract's agentId."""
        return self.agent.agent_id

    @property
    def namespace(self) -> str:
        """The agent's namespace."""
        return self.agent.namespace

    @property
    def name(self) -> str:
        """The agent's name."""
        return self.agent.name

    @property
    def uid(self) -> str:
        """The agent's metadata.uid (Events refer to it)."""
        return self.agent.uid

    @property
    def governance(self) -> Governance:
        """``spec.governance``."""
        return self.agent.spec.governance

    @property
    def on_breach(self) -> BreachAction:
        """``spec.governance.onBreach``."""
        return BreachAction(self.governance.on_breach)

    @property
    def acknowledged_breach(self) -> int:
        """``spec.governance.acknowledgedBreach``."""
        return self.governance.acknowledged_breach

    @property
    def alert_sinks(self) -> tuple[str, ...]:
        """Names of the AlertSinks the agent's violations go to."""
        return tuple(ref.name for ref in self.agent.spec.alert_sinks)

    @property
    def policy_key(self) -> str:
        """``<namespace>/<policy name>`` of the agent's GovernancePolicy."""
        return f"{self.namespace}/{self.governance.policy_ref.name}"

    @property
    def stale_after(self) -> float:
        """Seconds without a heartbeat after which the agent is stale."""
        governance = self.governance
        return float(
            governance.heartbeat_interval_seconds * governance.missed_heartbeats_before_stale
        )


def config_from_object(
    obj: Mapping[str, Any], scorings: Mapping[str, TrustScoring] | None = None
) -> AgentConfig:
    """The ingest view of a GovernedAgent body; :class:`~promethios.api.agent.InvalidSpec` if
    its spec does not parse. ``scorings`` maps ``<namespace>/<policy>`` to trust scoring."""
    agent = parse_agent(obj)
    config = AgentConfig(agent)
    scoring = (scorings or {}).get(config.policy_key)
    return AgentConfig(agent, scoring) if scoring is not None else config


def policy_scoring(obj: Mapping[str, Any]) -> TrustScoring:
    """The trust scoring of a GovernancePolicy body (the model's defaults if it does not parse)."""
    try:
        return GovernancePolicySpec.model_validate(obj.get("spec") or {}).trust_scoring
    except pydantic.ValidationError as error:
        metadata = obj.get("metadata") or {}
        log.warning(
            "GovernancePolicy %s/%s does not parse (%d errors); default trust scoring used",
            metadata.get("namespace"),
            metadata.get("name"),
            error.error_count(),
        )
        return TrustScoring()
