"""The agent's owner as attacker of the operator: enforcement cannot be sidestepped.

Plans are computed against ``World`` (a tiny in-memory API server, :mod:`operator_fakes`),
so each escape is tried end to end through the pure reconcile decisions.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_fakes import NOW, Keys, World, make_agent

from promethios.api import conditions as vocab


def ready_world(**overrides: Any) -> World:
    """An agent with two replicas, reconciled to Ready."""
    world = World(make_agent(replicas=2, **overrides))
    keys = Keys()
    world.reconcile(NOW, keys)
    world.deployment_becomes_ready()
    world.reconcile(NOW, keys)
    return world


def breach(world: World, action: str) -> None:
    """What the ingest API writes when the agent breaches its policy."""
    world.status["enforcement"] = {"action": action, "breach": 1, "reason": "1 critical"}


def remove_policy(world: World) -> None:
    world.policy = None


def remove_provider_secret(world: World) -> None:
    world.provider_keys = None


# -- 8. enforcement skipped when a reference is missing -----------------------------------


@pytest.mark.parametrize("remove", [remove_policy, remove_provider_secret])
@pytest.mark.parametrize(
    ("on_breach", "action"), [("Suspend", "Suspended"), ("Quarantine", "Quarantined")]
)
def test_deleting_a_reference_does_not_dodge_the_breach_action(
    remove: Any, on_breach: str, action: str
) -> None:
    world = ready_world(governance={"policyRef": {"name": "p"}, "onBreach": on_breach})
    assert world.live["Deployment"] is not None
    assert world.live["Deployment"]["spec"]["replicas"] == 2
    remove(world)  # the owner deletes the policy or the provider Secret, then breaches
    breach(world, action)
    world.reconcile(NOW, Keys())
    if action == "Suspended":
        assert world.live["Deployment"]["spec"]["replicas"] == 0
    else:  # a quarantine keeps the pods, cut off by the NetworkPolicy
        assert world.live["NetworkPolicy"] is not None
    ready = next(c for c in world.status["conditions"] if c["type"] == vocab.READY)
    assert ready["status"] == "False"


def test_suspend_with_a_missing_reference_scales_to_zero_too() -> None:
    world = ready_world()
    remove_policy(world)
    world.agent = make_agent(replicas=2, suspend=True)
    world.reconcile(NOW, Keys())
    assert world.live["Deployment"]["spec"]["replicas"] == 0


# -- 13. names that can never reconcile -----------------------------------------------------


@pytest.mark.parametrize("name", ["a" * 64, "9lives", "has.dot", "UPPER"])
def test_a_name_children_cannot_carry_is_reported_not_retried_forever(name: str) -> None:
    from dataclasses import replace

    world = World(replace(make_agent(), name=name))
    plan = world.reconcile(NOW, Keys())
    assert plan.apply == []  # no child is attempted: each would be refused
    ready = next(c for c in world.status["conditions"] if c["type"] == vocab.READY)
    assert (ready["status"], ready["reason"]) == ("False", vocab.INVALID_NAME)
    assert "metadata.name" in ready["message"]


# -- 7. quarantine must not cut the delivery of the violations that caused it ---------------


def test_quarantine_still_lets_the_sidecar_reach_the_ingest_and_dns() -> None:
    from dataclasses import replace

    from promethios.builders import BuildSettings
    from promethios.builders.network import build_network_policy
    from promethios.builders.sidecar import IngestPeer

    peer = IngestPeer(
        namespace="promethios-system",
        pod_labels={"app.kubernetes.io/name": "promethios-operator"},
        port=8443,
    )
    policy = build_network_policy(make_agent(), replace(BuildSettings(), ingest_peer=peer))
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in spec  # no way in
    egress = spec["egress"]
    ingest = next(rule for rule in egress if rule["ports"] == [{"port": 8443, "protocol": "TCP"}])
    assert ingest["to"] == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "promethios-system"}
            },
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "promethios-operator"}},
        }
    ]
    dns = [rule for rule in egress if {"port": 53, "protocol": "UDP"} in rule["ports"]]
    assert len(dns) == 1 and len(egress) == 2  # nothing else leaves the pod


def test_quarantine_without_a_known_ingest_denies_everything() -> None:
    from promethios.builders import BuildSettings
    from promethios.builders.network import build_network_policy

    spec = build_network_policy(make_agent(), BuildSettings())["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in spec and "ingress" not in spec


def test_a_quarantine_revokes_the_key_except_for_delivering_violations() -> None:
    """The key a quarantine revokes still delivers violations for the grace period (the
    sidecar may hold some, including the one that caused the quarantine), nothing else."""
    from promethios.ingest.keystore import AuthOutcome, KeyStore

    world = World(make_agent(apiKey={"gracePeriodSeconds": 600}))
    keys = Keys()
    world.reconcile(NOW, keys)
    breach(world, "Quarantined")
    world.reconcile(NOW, keys)
    secret = world.live["Secret"]
    assert secret is not None
    secret["metadata"]["namespace"] = "team-a"
    store = KeyStore()
    store.put_secret(secret)
    agent, identity = "team-a/support-bot", world.agent.governance_identity
    now = NOW.timestamp()

    def outcome(key: str, purpose: str, at: float = now) -> AuthOutcome:
        return store.authenticate(f"Bearer {key}", agent, identity, at, purpose).outcome

    assert outcome("key-1", "violations") is AuthOutcome.OK
    assert outcome("key-1", "reports") is AuthOutcome.UNAUTHENTICATED
    assert outcome("key-1", "violations", now + 601) is AuthOutcome.UNAUTHENTICATED
    assert outcome("key-2", "reports") is AuthOutcome.OK


def test_pods_get_time_to_drain_the_spool_when_they_stop() -> None:
    """A rollout, scale-down, suspend or eviction gives the sidecar its drain time."""
    from promethios.builders import BuildSettings
    from promethios.builders.workload import pod_spec

    pod = pod_spec(make_agent(sidecar={"drainSeconds": 45}), BuildSettings())
    assert pod["terminationGracePeriodSeconds"] >= 30 + 45  # the agent's own stop, then the drain
    default = pod_spec(make_agent(), BuildSettings())
    assert default["terminationGracePeriodSeconds"] >= 30 + 20


def test_a_pod_that_stopped_with_undelivered_violations_is_reported_once() -> None:
    """What the sidecar could not deliver before its pod went away shows on the agent."""
    import json

    from promethios.controller.losses import undelivered_report

    summary = {"undeliveredViolations": 3, "undeliveredBySeverity": {"high": 1, "low": 2}}
    pod = {
        "metadata": {
            "name": "support-bot-5d8f-abcde",
            "namespace": "team-a",
            "uid": "pod-uid-1234567890",
            "labels": {"promethios.ai/agent": "support-bot"},
        },
        "status": {
            "initContainerStatuses": [
                {
                    "name": "governance-sidecar",
                    "state": {"terminated": {"exitCode": 0, "message": json.dumps(summary)}},
                }
            ]
        },
    }
    report = undelivered_report(pod)
    assert report is not None
    assert (report.agent, report.undelivered, report.by_severity) == (
        "support-bot",
        3,
        {"high": 1, "low": 2},
    )
    assert report.event_name == undelivered_report(pod).event_name  # type: ignore[union-attr]
    assert "3 undelivered" in report.message and "support-bot-5d8f-abcde" in report.message
    # nothing to report: an empty spool, no message, garbage, or a container still running
    for message in [json.dumps({"undeliveredViolations": 0}), "", "not json", "{" * 5000]:
        quiet = json.loads(json.dumps(pod))
        quiet["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = message
        assert undelivered_report(quiet) is None
    running = json.loads(json.dumps(pod))
    running["status"]["initContainerStatuses"][0]["state"] = {"running": {}}
    assert undelivered_report(running) is None
