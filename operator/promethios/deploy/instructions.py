"""An agent's integration instructions, rendered from templates with its real values.

:func:`render` is what ``promethios instructions <namespace>/<agent>`` prints and what the
dashboard's agent page shows: how the agent's code reaches its model through the sidecar
(environment, base URLs, SDK snippets for the agent's provider in Python and Node), how
to report its own violations and metrics through the sidecar's local API, what the policy
enforces, and how to release a breach or roll back. Pure: it takes the typed agent, its
policy and its status, never a client, and never sees the agent's API key (the Agent
model does not hold it; the sidecar reads it from a file the agent cannot read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.agent import Agent
from ..api.common import ProviderType
from ..api.policy import GovernancePolicySpec
from ..api.rollout import Runtime
from ..api.sidecarconfig import SIDECAR_METRICS_PORT, SIDECAR_PROXY_PORT
from ..api.wire import PATH_HEARTBEAT, PATH_METRICS, PATH_VIOLATIONS
from ..builders.sidecar import default_base_url
from ..builders.workload import (
    ENV_AGENT_ID,
    ENV_GOVERNANCE_ID,
    ENV_REPORTING_URL,
    provider_env,
    proxy_url,
)
from .templating import render_template

#: A model the snippets name when neither the agent nor its policy lists any.
DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}
#: Snippet name -> template, per dialect; the reporting snippets work for every agent.
SDK_SNIPPETS = {
    "openai": {"openai-python": "openai.py.j2", "openai-node": "openai.mjs.j2"},
    "anthropic": {"anthropic-python": "anthropic.py.j2", "anthropic-node": "anthropic.mjs.j2"},
}
REPORT_SNIPPETS = {"report-python": "report.py.j2", "report-curl": "report.sh.j2"}


def dialect(agent: Agent) -> str:
    """``anthropic`` or ``openai`` (custom providers speak OpenAI's API)."""
    return "anthropic" if agent.spec.model_provider.type == ProviderType.ANTHROPIC else "openai"


def allowed_models(agent: Agent, policy: GovernancePolicySpec | None) -> list[str] | None:
    """The models the sidecar lets through (both lists apply); None: any."""
    lists = [agent.spec.model_provider.allowed_models, policy.allowed_models if policy else []]
    given = [set(models) for models in lists if models]
    if not given:
        return None
    return sorted(set.intersection(*given))


def example_model(agent: Agent, policy: GovernancePolicySpec | None) -> str:
    """The model the snippets call: an allowed one, else the dialect's default."""
    allowed = allowed_models(agent, policy)
    return allowed[0] if allowed else DEFAULT_MODELS[dialect(agent)]


def environment(agent: Agent) -> list[tuple[str, str]]:
    """The environment the operator gives the agent container (names and values; the
    provider key variable holds a placeholder: the sidecar swaps in the credential)."""
    owned = [
        (ENV_AGENT_ID, agent.agent_id),
        (ENV_GOVERNANCE_ID, agent.governance_identity),
        (ENV_REPORTING_URL, proxy_url()),
    ]
    return owned + [
        (e["name"], e["value"]) for e in provider_env(str(agent.spec.model_provider.type))
    ]


def context(
    agent: Agent,
    policy: GovernancePolicySpec | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the templates see."""
    status = status or {}
    provider = agent.spec.model_provider
    enforcement = status.get("enforcement") or {}
    return {
        "agent": agent,
        "agent_id": agent.agent_id,
        "name": agent.name,
        "namespace": agent.namespace,
        "identity": agent.governance_identity,
        "external": agent.spec.runtime == Runtime.EXTERNAL,
        "provider": str(provider.type),
        "upstream": provider.base_url
        or (default_base_url(str(provider.type)) if provider.type != "custom" else ""),
        "dialect": dialect(agent),
        "model": example_model(agent, policy),
        "allowed_models": allowed_models(agent, policy),
        "env": environment(agent),
        "proxy_url": proxy_url(),
        "proxy_port": SIDECAR_PROXY_PORT,
        "metrics_port": SIDECAR_METRICS_PORT,
        "paths": {
            "heartbeat": PATH_HEARTBEAT,
            "metrics": PATH_METRICS,
            "violations": PATH_VIOLATIONS,
        },
        "governance": agent.spec.governance,
        "policy_name": agent.spec.governance.policy_ref.name,
        "policy": policy,
        "rollout": agent.spec.rollout,
        "enforcement": {
            "action": str(enforcement.get("action") or "None"),
            "breach": int(enforcement.get("breach") or 0),
            "reason": str(enforcement.get("reason") or ""),
        },
        "revision": (status.get("rollout") or {}).get("revision"),
    }


def snippets(agent: Agent, policy: GovernancePolicySpec | None = None) -> dict[str, str]:
    """The code snippets for this agent, by name (``openai-python``, ``report-curl``, …):
    its provider's SDK in Python and Node, and the reporting API."""
    values = context(agent, policy)
    chosen = {**SDK_SNIPPETS[dialect(agent)], **REPORT_SNIPPETS}
    return {
        name: render_template(f"snippets/{template}", **values) for name, template in chosen.items()
    }


def render(
    agent: Agent,
    policy: GovernancePolicySpec | None = None,
    status: Mapping[str, Any] | None = None,
) -> str:
    """The agent's integration instructions, as Markdown."""
    values = context(agent, policy, status)
    return render_template("instructions.md.j2", snippets=snippets(agent, policy), **values)
