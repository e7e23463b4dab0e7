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
    assert world.live["Deployment"]["spec"]["replicas"] == 0
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
