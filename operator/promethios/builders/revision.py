"""Revisions: what one contains, its hash, its ControllerRevision, and restoring it.

A revision is the agent's spec without the fields a rollback must not change
(:data:`~promethios.api.rollout.NON_REVISION_FIELDS`) plus the policy it ran (name and
spec). The operator stores each in a ControllerRevision (``apps/v1``, as StatefulSets
and DaemonSets keep their history) named ``<agent>-<hash>``, owned by the agent; a
rollback, automatic or by ``promethios rollback``, reads it back with
:func:`restore_spec`.

The running revision's ControllerRevision is written lazily: until a newer revision
supersedes it, its content rides on a child every revision change rewrites anyway (the
Deployment; an External agent's ConfigMap): :data:`ANNOTATION_REVISION`,
:func:`annotate_revision`. Only a revision that can be rolled
back to (a superseded one) needs its own object, so an agent that never changes costs
no ControllerRevision write. Data too large for an annotation is stored at once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from ..api.agent import Agent
from ..api.governedagent import GovernedAgentSpec
from ..api.metadata import ANNOTATION_APPLIED_HASH
from ..api.policy import GovernancePolicySpec
from ..api.rollout import NON_REVISION_FIELDS, NON_REVISION_GOVERNANCE_FIELDS
from .meta import Manifest, canonical_json, object_meta, short_hash, stamp_applied_hash

COMPONENT = "revision"
HASH_LENGTH = 10
#: On the Deployment (or ConfigMap): the running revision's hash and data (JSON).
ANNOTATION_REVISION = "governance.promethios.ai/revision"
#: Larger revision data goes to its ControllerRevision at once: an object's annotations
#: may total 256 KiB, and the child's other annotations need room too.
MAX_ANNOTATED_BYTES = 64 * 1024


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


def annotate_revision(child: Manifest, digest: str, data: Mapping[str, Any]) -> bool:
    """Put the running revision on a child (re-stamping its applied hash); False,
    leaving the child as it was, when the data is too large for an annotation."""
    encoded = canonical_json({"hash": digest, "data": data})
    if len(encoded.encode()) > MAX_ANNOTATED_BYTES:
        return False
    annotations = child["metadata"].setdefault("annotations", {})
    annotations.pop(ANNOTATION_APPLIED_HASH, None)
    annotations[ANNOTATION_REVISION] = encoded
    stamp_applied_hash(child)
    return True


def annotated_revision(child: Mapping[str, Any] | None, digest: str) -> dict[str, Any] | None:
    """The data of revision ``digest`` as a child carries it; None when the child
    carries another revision, none, or something unreadable."""
    annotations = ((child or {}).get("metadata") or {}).get("annotations") or {}
    try:
        stored = json.loads(annotations.get(ANNOTATION_REVISION) or "null")
    except ValueError:
        return None
    if not isinstance(stored, dict) or stored.get("hash") != digest:
        return None
    data = stored.get("data")
    # The hash is of the data: an edited annotation is not taken for the revision.
    if not isinstance(data, dict) or revision_hash(data) != digest:
        return None
    return data
