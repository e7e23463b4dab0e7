"""The reconcile's decisions, without a cluster: what is applied, deleted, reported
(against ``World``, the tiny API server in :mod:`operator_fakes`)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from operator_fakes import World, with_server_defaults

from promethios.api import conditions as vocab
from promethios.api.metadata import ANNOTATION_CONFIG_HASH
from promethios.api.policy import BlockedPattern, GovernancePolicySpec
from promethios.controller.compare import is_subset, needs_apply
from promethios.controller.observed import Plan


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def kinds(plan: Plan) -> list[str]:
    return [m["kind"] for m in plan.apply]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- first reconcile and convergence ------------------------------------------------------


def test_first_reconcile_creates_every_child(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Secret", "ConfigMap", "Deployment", "Service"]
    assert plan.status is not None
    assert plan.status["governanceIdentity"] == f"ga-{world.agent.uid}"
    assert plan.status["observedGeneration"] == 1
    assert plan.status["children"] == {
        "secret": "support-bot-api-key",
        "configMap": "support-bot-governance",
        "deployment": "support-bot",
        "service": "support-bot",
    }
    assert ready(plan.status)["status"] == "False"
    assert plan.blocker is None and plan.events == []


def test_a_converged_agent_costs_no_writes(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.reconcile(now, keys)  # status picks up the created Deployment
    writes = world.writes
    for minute in range(3):
        plan = world.reconcile(now + timedelta(minutes=minute), keys)
        assert plan.apply == [] and plan.status is None and plan.events == []
    assert world.writes == writes
    assert keys.count == 1  # the key was generated once and read back afterwards


def test_ready_once_the_deployment_is_ready(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.deployment_becomes_ready()
    plan = world.reconcile(now + timedelta(seconds=5), keys)
    assert plan.apply == []
    assert plan.status is not None
    assert ready(plan.status)["status"] == "True"
    assert ready(plan.status)["lastTransitionTime"] == "2025-01-01T12:00:05Z"
    assert plan.status["readyReplicas"] == 1 and plan.status["replicas"] == 1


def test_ingest_conditions_survive_and_do_not_cause_writes(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.reconcile(now, keys)
    world.status["conditions"].append(
        {"type": "HeartbeatFresh", "status": "True", "reason": "Fresh", "lastTransitionTime": "x"}
    )
    world.status["heartbeat"] = {"state": "active"}
    plan = world.reconcile(now, keys)
    assert plan.status is None


def test_deleted_child_is_recreated(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.live["ConfigMap"] = None
    assert kinds(world.reconcile(now, keys)) == ["ConfigMap"]


def test_drifted_child_is_repaired(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    deployment = world.live["Deployment"]
    assert deployment is not None
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert kinds(world.reconcile(now, keys)) == ["Deployment"]


def test_image_change_touches_the_deployment_only(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.agent = agent_factory(image="example.com/agent:2.0", generation=2)
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Deployment"]
    assert plan.status is not None and plan.status["observedGeneration"] == 2


def test_policy_change_rolls_the_pods(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    before = world.live["Deployment"]
    assert before is not None
    old_hash = before["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
    world.policy = GovernancePolicySpec(blocked_patterns=[BlockedPattern(name="n", pattern="x")])
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["ConfigMap", "Deployment"]
    after = world.live["Deployment"]
    assert after is not None
    assert after["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] != old_hash


# --- replicas ---------------------------------------------------------------------------


def test_replicas_omitted_unless_set(agent_factory: Any, now: datetime, keys: Any) -> None:
    plan = World(agent_factory()).reconcile(now, keys)
    assert "replicas" not in plan.apply[2]["spec"]
    plan = World(agent_factory(replicas=3)).reconcile(now, keys)
    assert plan.apply[2]["spec"]["replicas"] == 3


def test_suspend_scales_to_zero_and_resume_restores(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory(replicas=2))
    world.reconcile(now, keys)
    world.agent = agent_factory(replicas=2, suspend=True, generation=2)
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Deployment"] and plan.apply[0]["spec"]["replicas"] == 0
    assert plan.status is not None
    assert ready(plan.status)["reason"] == vocab.SUSPENDED
    world.agent = agent_factory(replicas=2, generation=3)
    plan = world.reconcile(now, keys)
    assert plan.apply[0]["spec"]["replicas"] == 2


# --- missing references -----------------------------------------------------------------


def test_missing_policy_blocks_the_workload_and_warns_once(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory())
    world.policy = None  # type: ignore[assignment]
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Secret"]  # the key exists early; no pods without a policy
    assert plan.blocker is not None and plan.blocker.reason == vocab.POLICY_NOT_FOUND
    assert "GovernancePolicy team-a/default-policy not found" in plan.blocker.message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", vocab.POLICY_NOT_FOUND)]
    assert world.status["conditions"][0]["reason"] == vocab.POLICY_NOT_FOUND
    again = world.reconcile(now + timedelta(seconds=10), keys)
    assert again.events == [] and again.status is None and again.blocker is not None


def test_recovery_once_the_policy_appears(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.policy = None  # type: ignore[assignment]
    world.reconcile(now, keys)
    world.policy = GovernancePolicySpec()
    plan = world.reconcile(now, keys)
    assert plan.blocker is None
    assert kinds(plan) == ["ConfigMap", "Deployment", "Service"]
    world.deployment_becomes_ready()
    world.reconcile(now, keys)
    assert ready(world.status)["status"] == "True"


def test_missing_provider_secret(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory(), provider_keys=None)
    plan = world.reconcile(now, keys)
    assert plan.blocker is not None
    assert plan.blocker.reason == vocab.PROVIDER_SECRET_NOT_FOUND
    assert plan.blocker.message == "Secret team-a/openai-credentials not found"
    assert kinds(plan) == ["Secret"]


def test_provider_secret_without_the_key(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory(), provider_keys=frozenset({"other"}))
    plan = world.reconcile(now, keys)
    assert plan.blocker is not None and "has no key 'apiKey'" in plan.blocker.message


def test_missing_alert_sink_reports_but_still_deploys(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory(alertSinks=[{"name": "slack"}]))
    world.missing_sinks = ("slack",)
    plan = world.reconcile(now, keys)
    assert plan.blocker is not None and plan.blocker.reason == vocab.ALERT_SINK_NOT_FOUND
    assert "AlertSink team-a/slack not found" in plan.blocker.message
    assert kinds(plan) == ["Secret", "ConfigMap", "Deployment", "Service"]


# --- API key rotation ---------------------------------------------------------------------


def test_rotation_keeps_the_previous_hash_for_the_grace_period(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    assert world.secret_data()["apiKey"] == "key-1"
    world.agent = agent_factory(apiKey={"rotation": 1, "gracePeriodSeconds": 600}, generation=2)
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Secret"]
    data = world.secret_data()
    assert data["apiKey"] == "key-2" and data["apiKeySha256"] == sha("key-2")
    assert data["previousApiKeySha256"] == sha("key-1")
    expires = "2025-01-01T12:10:00Z"
    assert world.secret_annotations()["promethios.ai/previous-key-expires-at"] == expires
    assert world.status["apiKey"] == {"rotation": 1, "previousKeyExpiresAt": expires}
    assert [e.reason for e in plan.events] == ["ApiKeyRotated"]
    assert all("key-" not in e.message for e in plan.events)

    during = world.reconcile(now + timedelta(minutes=9), keys)
    assert during.apply == [] and during.status is None

    after = world.reconcile(now + timedelta(minutes=10), keys)
    assert kinds(after) == ["Secret"]
    assert "previousApiKeySha256" not in world.secret_data()
    assert "promethios.ai/previous-key-expires-at" not in world.secret_annotations()
    assert world.secret_data()["apiKey"] == "key-2"
    assert world.status["apiKey"] == {"rotation": 1}


def test_rotation_without_grace_drops_the_old_key_at_once(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.agent = agent_factory(apiKey={"rotation": 1, "gracePeriodSeconds": 0})
    world.reconcile(now, keys)
    assert "previousApiKeySha256" not in world.secret_data()


def test_lowering_the_rotation_counter_changes_nothing(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory(apiKey={"rotation": 2}))
    world.reconcile(now, keys)
    world.agent = agent_factory(apiKey={"rotation": 1})
    plan = world.reconcile(now, keys)
    assert plan.apply == [] and world.secret_data()["apiKey"] == "key-1"


def test_a_lost_secret_gets_a_new_key(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    world.live["Secret"] = None
    world.reconcile(now, keys)
    assert world.secret_data()["apiKey"] == "key-2"


# --- enforcement ----------------------------------------------------------------------------


def enforce(world: World, action: str, breach: int) -> None:
    world.status["enforcement"] = {"action": action, "breach": breach, "reason": "critical"}


def test_enforcement_suspend_scales_to_zero(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory(replicas=2))
    world.reconcile(now, keys)
    enforce(world, "Suspended", 1)
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Deployment"] and plan.apply[0]["spec"]["replicas"] == 0
    assert ready(world.status)["reason"] == vocab.ENFORCEMENT_SUSPENDED
    assert "acknowledgedBreach to 1" in ready(world.status)["message"]
    assert world.secret_data()["apiKey"] == "key-1"  # suspension keeps the key


def test_quarantine_denies_traffic_and_revokes_the_key_once(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = World(agent_factory(replicas=2))
    world.reconcile(now, keys)
    template = copy.deepcopy(world.live["Deployment"]["spec"]["template"])  # type: ignore[index]
    enforce(world, "Quarantined", 1)
    plan = world.reconcile(now, keys)
    assert sorted(kinds(plan)) == ["ConfigMap", "NetworkPolicy", "Secret"]
    # The pods keep running, cut off: network denied, model calls refused by the sidecar
    # (told through its config, which it re-reads live: the pod template does not change).
    assert world.live["Deployment"]["spec"]["replicas"] == 2  # type: ignore[index]
    assert world.live["Deployment"]["spec"]["template"] == template  # type: ignore[index]
    config = json.loads(world.live["ConfigMap"]["data"]["config.json"])  # type: ignore[index]
    assert config["quarantined"] is True
    data = world.secret_data()
    assert data["apiKey"] == "key-2"
    # The revoked key may still deliver violations for the grace period, nothing else.
    assert data["previousApiKeySha256"] == hashlib.sha256(b"key-1").hexdigest()
    assert world.secret_annotations()["promethios.ai/previous-key-scope"] == "violations"
    assert world.status["children"]["networkPolicy"] == "support-bot-quarantine"
    assert {e.reason for e in plan.events} == {"ApiKeyRevoked", vocab.QUARANTINED}
    again = world.reconcile(now, keys)
    assert again.apply == [] and keys.count == 2  # revoked once per breach


def test_release_restores_the_agent(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(agent_factory())
    world.reconcile(now, keys)
    enforce(world, "Quarantined", 1)
    world.reconcile(now, keys)
    world.agent = agent_factory(
        governance={"policyRef": {"name": "default-policy"}, "acknowledgedBreach": 1},
        generation=2,
    )
    plan = world.reconcile(now, keys)
    assert plan.release is not None
    assert plan.release["status"]["enforcement"]["action"] == "None"
    assert plan.release["status"]["enforcement"]["breach"] == 1
    assert plan.delete == [("NetworkPolicy", "support-bot-quarantine")]
    assert kinds(plan) == ["ConfigMap"]  # the sidecar forwards again; the pods never left
    assert json.loads(plan.apply[0]["data"]["config.json"])["quarantined"] is False
    assert "networkPolicy" not in world.status["children"]
    settled = world.reconcile(now, keys)
    assert settled.apply == [] and settled.delete == [] and settled.release is None


def test_unacknowledged_breach_stays_enforced(agent_factory: Any, now: datetime, keys: Any) -> None:
    world = World(
        agent_factory(governance={"policyRef": {"name": "default-policy"}, "acknowledgedBreach": 1})
    )
    world.reconcile(now, keys)
    enforce(world, "Suspended", 2)
    plan = world.reconcile(now, keys)
    assert plan.release is None and plan.apply[0]["spec"]["replicas"] == 0


# --- the comparison that decides whether to write -------------------------------------------


def test_is_subset_ignores_server_added_fields() -> None:
    assert is_subset({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not is_subset({"a": {"b": 1}}, {"a": {"b": 2}})
    assert is_subset({"l": [{"x": 1}]}, {"l": [{"x": 1, "y": 2}]})
    assert not is_subset({"l": [{"x": 1}]}, {"l": [{"x": 1}, {"x": 2}]})
    assert not is_subset({"a": 1}, {})


def test_needs_apply() -> None:
    manifest = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}}
    assert needs_apply(manifest, None)
    assert not needs_apply(manifest, with_server_defaults(manifest))
    assert needs_apply(manifest, {**manifest, "data": {"k": "w"}})
