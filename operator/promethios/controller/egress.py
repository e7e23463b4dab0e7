"""The egress lock in the reconcile: which gateway objects and NetworkPolicies an agent
needs, reading them, and the ``status.egress`` the operator reports.

Pure planning (:func:`plan_gateway`, :func:`plan_lock_policies`, :func:`egress_status`)
beside one read (:func:`read_live`); :mod:`.plan` and :mod:`.reconcile` call in here.

With egress Locked the agent's pods run no sidecar; the gateway (:mod:`..builders.gateway`)
runs it, with the agent's own ConfigMap and Secrets. The lock's two NetworkPolicies exist
while the agent is Locked and not quarantined; a quarantine replaces them with its own,
which covers the gateway's pods too (NetworkPolicies add up: the lock's would reopen it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.agent import Agent
from ..api.egress import EgressMode, EgressPolicy, Placement
from ..api.rollout import Runtime
from ..builders.gateway import (
    build_gateway_deployment,
    build_gateway_service,
    gateway_name,
    locked,
)
from ..builders.meta import Manifest
from ..builders.network import (
    agent_policy_name,
    build_agent_egress_policy,
    build_gateway_network_policy,
    gateway_policy_name,
)
from ..builders.sidecar import BuildSettings
from .compare import needs_apply

#: Keys of :attr:`.plan.Observed.live` for the lock's objects (beside "Deployment" & co.).
GATEWAY_DEPLOYMENT = "Gateway/Deployment"
GATEWAY_SERVICE = "Gateway/Service"
AGENT_POLICY = "EgressLock/Agent"
GATEWAY_POLICY = "EgressLock/Gateway"


@dataclass(frozen=True)
class Slot:
    """One of the lock's objects: its key in ``live``, its kind and its name."""

    key: str
    kind: str
    name: str


def slots(agent_name: str) -> tuple[Slot, ...]:
    """The lock's objects of one agent, by deterministic name."""
    gateway = gateway_name(agent_name)
    return (
        Slot(GATEWAY_DEPLOYMENT, "Deployment", gateway),
        Slot(GATEWAY_SERVICE, "Service", gateway),
        Slot(AGENT_POLICY, "NetworkPolicy", agent_policy_name(agent_name)),
        Slot(GATEWAY_POLICY, "NetworkPolicy", gateway_policy_name(agent_name)),
    )


def gateway_in_force(agent: Agent) -> bool:
    """Locked agents in the cluster get a gateway (an External agent's pods are not ours)."""
    return locked(agent) and agent.spec.runtime != Runtime.EXTERNAL


def may_have_lock(agent: Agent, status: Mapping[str, Any]) -> bool:
    """Whether the lock's objects may exist: the agent is Locked, or its status says it was
    (so that unlocking deletes them); else the reads are skipped."""
    egress = status.get("egress") or {}
    return gateway_in_force(agent) or egress.get("placement") == Placement.GATEWAY.value


def read_live(
    read: Callable[[str, str], Mapping[str, Any] | None],
    agent: Agent,
    status: Mapping[str, Any],
) -> dict[str, Mapping[str, Any] | None]:
    """The lock's objects, read with ``read(kind, name)`` — the reconcile's own reader
    (the watch-fed cache, else a GET) — none when :func:`may_have_lock` says they
    cannot exist."""
    if not may_have_lock(agent, status):
        return {}
    return {slot.key: read(slot.kind, slot.name) for slot in slots(agent.name)}


#: Warning reason: the gateway's name is taken by an object another owner controls.
GATEWAY_NAME_TAKEN = "GatewayNameTaken"


def _foreign(child: Mapping[str, Any] | None, agent: Agent) -> bool:
    """Whether a live object is controlled by something other than this agent."""
    if child is None:
        return False
    owners = (child.get("metadata") or {}).get("ownerReferences") or []
    controllers = [o for o in owners if o.get("controller")]
    return not any(o.get("uid") == agent.uid for o in controllers)


def name_conflict(agent: Agent, live: Mapping[str, Mapping[str, Any] | None]) -> str | None:
    """Why the gateway cannot be written: its Deployment or Service name is another's (an
    agent named ``<this agent>-gateway`` has both). None when the names are free or ours."""
    for slot in slots(agent.name)[:2]:
        if _foreign(live.get(slot.key), agent):
            return (
                f"{slot.kind} {agent.namespace}/{slot.name} belongs to another owner: the "
                "gateway is not written and the agent's model calls fail until it is renamed"
            )
    return None


def _apply_or_skip(desired: Manifest, live: Mapping[str, Any] | None) -> list[Manifest]:
    return [desired] if needs_apply(desired, live) else []


def _delete_present(
    live: Mapping[str, Mapping[str, Any] | None], keys: tuple[str, ...], agent_name: str
) -> list[tuple[str, str]]:
    wanted = [slot for slot in slots(agent_name) if slot.key in keys]
    return [(slot.kind, slot.name) for slot in wanted if live.get(slot.key) is not None]


def plan_gateway(
    agent: Agent,
    settings: BuildSettings,
    live: Mapping[str, Mapping[str, Any] | None],
    config_digest: str,
    replicas: int | None,
) -> tuple[list[Manifest], list[tuple[str, str]]]:
    """The gateway's Deployment and Service to apply, or (unlocked) the ones to delete."""
    if not gateway_in_force(agent):
        ours = {k: v for k, v in live.items() if not _foreign(v, agent)}
        return [], _delete_present(ours, (GATEWAY_DEPLOYMENT, GATEWAY_SERVICE), agent.name)
    if name_conflict(agent, live) is not None:
        return [], []
    deployment = build_gateway_deployment(agent, settings, config_digest, replicas)
    return [
        *_apply_or_skip(deployment, live.get(GATEWAY_DEPLOYMENT)),
        *_apply_or_skip(build_gateway_service(agent), live.get(GATEWAY_SERVICE)),
    ], []


def plan_lock_policies(
    agent: Agent,
    settings: BuildSettings,
    live: Mapping[str, Mapping[str, Any] | None],
    allowed: EgressPolicy | None,
    provider_url: str,
    quarantined: bool,
) -> tuple[list[Manifest], list[tuple[str, str]]]:
    """The lock's NetworkPolicies: applied while Locked and not quarantined, else deleted."""
    if not gateway_in_force(agent) or quarantined:
        return [], _delete_present(live, (AGENT_POLICY, GATEWAY_POLICY), agent.name)
    agent_policy = build_agent_egress_policy(agent, allowed)
    gateway_policy = build_gateway_network_policy(agent, settings, provider_url)
    return [
        *_apply_or_skip(agent_policy, live.get(AGENT_POLICY)),
        *_apply_or_skip(gateway_policy, live.get(GATEWAY_POLICY)),
    ], []


def egress_status(
    agent: Agent, quarantined: bool, live: Mapping[str, Mapping[str, Any] | None] | None = None
) -> dict[str, Any]:
    """``status.egress``: the egress and placement in force, the lock's objects by name
    (and, when the gateway's name is taken, why it is not running)."""
    if not gateway_in_force(agent):
        return {"mode": EgressMode.OPEN.value, "placement": Placement.SIDECAR.value}
    status: dict[str, Any] = {
        "mode": EgressMode.LOCKED.value,
        "placement": Placement.GATEWAY.value,
        "gateway": gateway_name(agent.name),
    }
    if not quarantined:
        status["networkPolicies"] = [agent_policy_name(agent.name), gateway_policy_name(agent.name)]
    conflict = name_conflict(agent, live or {})
    if conflict is not None:
        status["message"] = conflict
    return status


def warnings(desired: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A Warning (reason, message) when a name conflict starts, not on every reconcile."""
    message = desired.get("message")
    if message is None or (current.get("egress") or {}).get("message") == message:
        return []
    return [(GATEWAY_NAME_TAKEN, str(message))]


def plan_egress(
    agent: Agent,
    settings: BuildSettings,
    live: Mapping[str, Mapping[str, Any] | None],
    allowed: EgressPolicy | None,
    provider_url: str,
    config_digest: str,
    replicas: int | None,
    quarantined: bool,
) -> tuple[list[Manifest], list[tuple[str, str]]]:
    """Everything the lock writes for one agent: the gateway first, then its policies."""
    apply, delete = plan_gateway(agent, settings, live, config_digest, replicas)
    more, gone = plan_lock_policies(agent, settings, live, allowed, provider_url, quarantined)
    return apply + more, delete + gone
