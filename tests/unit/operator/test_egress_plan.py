"""The reconcile's decisions for the egress lock (against a ``World`` that keeps the
gateway's objects apart from the agent's, by name, as the API server does)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from operator_fakes import SETTINGS, World, apply_status, with_server_defaults

from promethios.api.policy import GovernancePolicySpec
from promethios.controller import egress
from promethios.controller.plan import Plan, plan_agent

LOCKED = {"policyRef": {"name": "default-policy"}, "egress": "Locked"}
OPEN = {"policyRef": {"name": "default-policy"}}
NAMES = {
    ("Deployment", "support-bot-gateway"): egress.GATEWAY_DEPLOYMENT,
    ("Service", "support-bot-gateway"): egress.GATEWAY_SERVICE,
    ("NetworkPolicy", "support-bot-egress-agent"): egress.AGENT_POLICY,
    ("NetworkPolicy", "support-bot-egress-gateway"): egress.GATEWAY_POLICY,
}


class LockWorld(World):
    """``World`` whose live objects are keyed as :func:`.reconcile.observe` keys them."""

    def reconcile(self, now: datetime, keys: Any) -> Plan:
        plan = plan_agent(self.observe(), SETTINGS, now, keys)
        for manifest in plan.apply:
            key = NAMES.get((manifest["kind"], manifest["metadata"]["name"]), manifest["kind"])
            self.live[key] = with_server_defaults(manifest)
            self.writes += 1
        for kind, name in plan.delete:
            self.live[NAMES.get((kind, name), kind)] = None
            self.writes += 1
        if plan.release is not None:
            self.status["enforcement"] = plan.release["status"]["enforcement"]
        if plan.status is not None:
            self.status = apply_status(self.status, plan.status)
        return plan


def applied(plan: Plan) -> list[tuple[str, str]]:
    return [(m["kind"], m["metadata"]["name"]) for m in plan.apply]


def test_locked_agent_gets_a_gateway_and_two_policies(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = LockWorld(agent_factory(governance=LOCKED))
    plan = world.reconcile(now, keys)
    assert set(NAMES) <= set(applied(plan))
    agent_pod = world.live["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    assert [c["name"] for c in agent_pod["containers"]] == ["agent"]
    config = json.loads(world.live["ConfigMap"]["data"]["config.json"])  # type: ignore[index]
    assert config["listenHost"] == "0.0.0.0"  # gateway mode
    assert plan.status is not None
    assert plan.status["egress"] == {
        "mode": "Locked",
        "placement": "Gateway",
        "gateway": "support-bot-gateway",
        "networkPolicies": ["support-bot-egress-agent", "support-bot-egress-gateway"],
    }


def test_a_converged_locked_agent_costs_no_writes(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = LockWorld(agent_factory(governance=LOCKED))
    world.reconcile(now, keys)
    world.reconcile(now, keys)
    plan = world.reconcile(now, keys)
    assert plan.apply == [] and plan.delete == [] and plan.status is None


def test_open_agent_reports_its_sidecar_and_gets_no_gateway(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = LockWorld(agent_factory())
    plan = world.reconcile(now, keys)
    assert not set(NAMES) & set(applied(plan))
    assert world.status["egress"] == {"mode": "Open", "placement": "Sidecar"}
    config = json.loads(world.live["ConfigMap"]["data"]["config.json"])  # type: ignore[index]
    assert config["listenHost"] == "127.0.0.1"


def test_unlocking_deletes_the_gateway_and_its_policies(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = LockWorld(agent_factory(governance=LOCKED))
    world.reconcile(now, keys)
    world.agent = agent_factory(governance=OPEN, generation=2)
    plan = world.reconcile(now, keys)
    assert sorted(plan.delete) == sorted(NAMES)
    pod = world.live["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    assert [c["name"] for c in pod["initContainers"]] == ["governance-sidecar"]
    assert world.status["egress"]["placement"] == "Sidecar"


def test_quarantine_of_a_locked_agent_swaps_the_lock_for_the_quarantine(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    """NetworkPolicies add up: the lock's would let the gateway reach the provider."""
    world = LockWorld(agent_factory(governance=LOCKED))
    world.reconcile(now, keys)
    world.status["enforcement"] = {"action": "Quarantined", "breach": 1, "reason": "critical"}
    plan = world.reconcile(now, keys)
    assert sorted(plan.delete) == [
        ("NetworkPolicy", "support-bot-egress-agent"),
        ("NetworkPolicy", "support-bot-egress-gateway"),
    ]
    quarantine = world.live["NetworkPolicy"]
    assert quarantine is not None
    expressions = quarantine["spec"]["podSelector"]["matchExpressions"]
    assert expressions[0]["values"] == ["promethios-agent", "promethios-gateway"]
    assert world.live[egress.GATEWAY_DEPLOYMENT]["spec"]["replicas"] == 1  # type: ignore[index]
    config = json.loads(world.live["ConfigMap"]["data"]["config.json"])  # type: ignore[index]
    assert config["quarantined"] is True  # the gateway refuses calls too
    assert "networkPolicies" not in world.status["egress"]
    # The release puts the lock back.
    world.agent = agent_factory(governance={**LOCKED, "acknowledgedBreach": 1}, generation=2)
    released = world.reconcile(now, keys)
    assert ("NetworkPolicy", "support-bot-egress-agent") in applied(released)
    assert ("NetworkPolicy", "support-bot-quarantine") in released.delete


def test_the_allow_list_comes_from_the_policy(agent_factory: Any, now: datetime, keys: Any) -> None:
    policy = GovernancePolicySpec.model_validate(
        {"egress": {"allow": [{"cidr": "10.9.0.0/16", "ports": [{"port": 443}]}]}}
    )
    world = LockWorld(agent_factory(governance=LOCKED), policy=policy)
    world.reconcile(now, keys)
    rules = world.live[egress.AGENT_POLICY]["spec"]["egress"]  # type: ignore[index]
    assert {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}],
            "ports": [{"port": 443, "protocol": "TCP"}]} in rules  # fmt: skip


def test_suspend_scales_the_gateway_to_zero(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = LockWorld(agent_factory(governance=LOCKED))
    world.reconcile(now, keys)
    world.agent = agent_factory(governance=LOCKED, suspend=True, generation=2)
    world.reconcile(now, keys)
    assert world.live[egress.GATEWAY_DEPLOYMENT]["spec"]["replicas"] == 0  # type: ignore[index]


def test_external_agents_are_never_locked_into_a_gateway(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = LockWorld(agent_factory(governance=LOCKED, runtime="External"))
    plan = world.reconcile(now, keys)
    assert not set(NAMES) & set(applied(plan))
    assert world.status["egress"]["mode"] == "Open"


def test_reads_are_skipped_for_an_agent_never_locked(agent_factory: Any) -> None:
    assert egress.may_have_lock(agent_factory(), {}) is False
    assert egress.may_have_lock(agent_factory(), {"egress": {"placement": "Gateway"}}) is True
    assert egress.may_have_lock(agent_factory(governance=LOCKED), {}) is True


def test_a_gateway_name_taken_by_another_owner_is_left_alone(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    """An agent named ``support-bot-gateway`` owns a Deployment and Service of that name."""
    world = LockWorld(agent_factory(governance=LOCKED))
    other = {"metadata": {"name": "support-bot-gateway", "ownerReferences": [
        {"uid": "someone-else", "controller": True, "kind": "GovernedAgent"}]}}  # fmt: skip
    world.live[egress.GATEWAY_DEPLOYMENT] = {"kind": "Deployment", **other}
    world.live[egress.GATEWAY_SERVICE] = {"kind": "Service", **other}
    plan = world.reconcile(now, keys)
    assert ("Deployment", "support-bot-gateway") not in applied(plan)
    assert ("Service", "support-bot-gateway") not in applied(plan)
    assert "belongs to another owner" in world.status["egress"]["message"]
    assert [e.reason for e in plan.events if e.reason == egress.GATEWAY_NAME_TAKEN] == [
        egress.GATEWAY_NAME_TAKEN
    ]
    again = world.reconcile(now, keys)
    assert egress.GATEWAY_NAME_TAKEN not in [e.reason for e in again.events]  # once
    # Unlocking never deletes what is not ours.
    world.agent = agent_factory(governance=OPEN, generation=2)
    unlocked = world.reconcile(now, keys)
    assert ("Deployment", "support-bot-gateway") not in unlocked.delete
