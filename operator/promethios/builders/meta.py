"""Names, labels, owner references and hashes shared by every child manifest.

The label and annotation keys themselves are :mod:`promethios.api.metadata`'s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.agent import Agent
from ..api.apikey import secret_name
from ..api.common import API_VERSION
from ..api.metadata import (
    ANNOTATION_APPLIED_HASH,
    LABEL_AGENT,
    LABEL_COMPONENT,
    LABEL_COMPONENT_APP,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
)

KIND = "GovernedAgent"
APP_NAME = "promethios-agent"
PART_OF = "promethios"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ChildNames:
    """The names of an agent's children, derived from the agent's name only."""

    secret: str
    config_map: str
    deployment: str
    service: str
    network_policy: str

    @classmethod
    def of(cls, agent_name: str) -> ChildNames:
        """Deterministic names, so a restarted operator finds what it created."""
        return cls(
            secret=secret_name(agent_name),
            config_map=f"{agent_name}-governance",
            deployment=agent_name,
            service=agent_name,
            network_policy=f"{agent_name}-quarantine",
        )


def selector_labels(agent: Agent) -> dict[str, str]:
    """The immutable Deployment selector; also what the Service and NetworkPolicy select."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: agent.name}


def labels(agent: Agent, component: str) -> dict[str, str]:
    """Standard recommended labels plus the operator's own, on every child."""
    return {
        **selector_labels(agent),
        LABEL_COMPONENT_APP: component,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_AGENT: agent.name,
        LABEL_COMPONENT: component,
    }


def owner_reference(agent: Agent) -> dict[str, Any]:
    """A controller owner reference: children are garbage-collected with the agent."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": agent.name,
        "uid": agent.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(
    agent: Agent,
    name: str,
    component: str,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """metadata for a child: name, namespace, labels, owner reference, annotations."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": agent.namespace,
        "labels": labels(agent, component),
        "ownerReferences": [owner_reference(agent)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON: equal values always give equal text (and hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(value: Any) -> str:
    """A 16-hex-digit SHA-256 prefix of a value's canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def stamp_applied_hash(manifest: Manifest) -> Manifest:
    """Record the manifest's own hash in an annotation.

    A removed label or annotation cannot be seen by comparing the desired manifest
    as a subset of the live object; the hash changes with every change of the
    desired manifest, so the subset comparison catches those too.
    """
    digest = short_hash(manifest)
    metadata = manifest.setdefault("metadata", {})
    metadata.setdefault("annotations", {})[ANNOTATION_APPLIED_HASH] = digest
    return manifest
