"""Revisions: what one contains, its hash, its ControllerRevision, and restoring it.

A revision is the agent's spec without the fields a rollback must not change
(:data:`~promethios.api.rollout.NON_REVISION_FIELDS`) plus the policy it ran (name and
spec). The operator stores each in a ControllerRevision (``apps/v1``, as StatefulSets
and DaemonSets keep their history) named ``<agent>-<hash>``, owned by the agent; a
rollback, automatic or by ``promethios rollback``, reads it back with
:func:`restore_spec`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..api.agent import Agent
from ..api.governedagent import GovernedAgentSpec
from ..api.policy import GovernancePolicySpec
from ..api.rollout import NON_REVISION_FIELDS, NON_REVISION_GOVERNANCE_FIELDS
from .meta import Manifest, object_meta, short_hash, stamp_applied_hash

COMPONENT = "revision"
HASH_LENGTH = 10


def revision_spec(spec: GovernedAgentSpec) -> dict[str, Any]:
    """The part of a spec a revision holds (camelCase, defaults filled in)."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name in NON_REVISION_FIELDS:
        dumped.pop(name, None)
    for name in NON_REVISION_GOVERNANCE_FIELDS:
        dumped.get("governance", {}).pop(name, None)
    return dumped


def revision_data(
    spec: GovernedAgentSpec, policy_name: str, policy: GovernancePolicySpec
) -> dict[str, Any]:
    """What a ControllerRevision stores: the revision's spec and its policy."""
    return {
        "spec": revision_spec(spec),
        "policy": {
            "name": policy_name,
            "spec": policy.model_dump(mode="json", by_alias=True, exclude_none=True),
        },
    }


def revision_hash(data: Mapping[str, Any]) -> str:
    """A short hash of :func:`revision_data`: equal content, equal hash."""
    return short_hash(data)[:HASH_LENGTH]


def controller_revision_name(agent_name: str, digest: str) -> str:
    """``<agent>-<hash>``: deterministic, so a restarted operator finds it."""
    return f"{agent_name}-{digest}"


def build_controller_revision(
    agent: Agent, digest: str, number: int, data: Mapping[str, Any]
) -> Manifest:
    """The ControllerRevision holding one revision's spec and policy."""
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": object_meta(agent, controller_revision_name(agent.name, digest), COMPONENT),
        "data": dict(data),
        "revision": number,
    }
    return stamp_applied_hash(manifest)


def stored_policy(data: Mapping[str, Any]) -> tuple[str, GovernancePolicySpec]:
    """The policy name and spec a ControllerRevision's data holds."""
    policy = data.get("policy") or {}
    return str(policy.get("name") or ""), GovernancePolicySpec.model_validate(
        policy.get("spec") or {}
    )


def restore_spec(stored: Mapping[str, Any], current: GovernedAgentSpec) -> GovernedAgentSpec:
    """A revision's spec with the current values of the fields no revision holds
    (replicas, suspend, key rotation, the breach acknowledgement, rollout settings).

    Raises pydantic's ValidationError when the stored spec no longer validates.
    """
    now = current.model_dump(mode="json", by_alias=True, exclude_none=True)
    restored: dict[str, Any] = copy.deepcopy(dict(stored))
    for name in NON_REVISION_FIELDS:
        restored.pop(name, None)
        if name in now:
            restored[name] = now[name]
    governance = restored.setdefault("governance", {})
    for name in NON_REVISION_GOVERNANCE_FIELDS:
        governance[name] = now["governance"][name]
    return GovernedAgentSpec.model_validate(restored)
