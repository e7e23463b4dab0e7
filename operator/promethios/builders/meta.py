"""Names, labels, owner references and hashes shared by every child manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.common import ANNOTATION_PREFIX, API_VERSION, FIELD_MANAGER
from ..api.governedagent import GovernedAgentSpec, GovernedAgentStatus

KIND = "GovernedAgent"
APP_NAME = "promethios-agent"
PART_OF = "promethios"

LABEL_AGENT = f"{ANNOTATION_PREFIX}/agent"
LABEL_COMPONENT = f"{ANNOTATION_PREFIX}/component"
ANNOTATION_APPLIED_HASH = f"{ANNOTATION_PREFIX}/applied-hash"
ANNOTATION_CONFIG_HASH = f"{ANNOTATION_PREFIX}/config-hash"
ANNOTATION_IDENTITY = f"{ANNOTATION_PREFIX}/governance-identity"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Agent:
    """A GovernedAgent as the builders see it: identity plus typed spec and status."""

    name: str
    namespace: str
    uid: str
    spec: GovernedAgentSpec
    generation: int = 1
    status: GovernedAgentStatus = field(default_factory=GovernedAgentStatus)

    @property
    def agent_id(self) -> str:
        """``<namespace>/<name>``: the agentId of the wire contract."""
        return f"{self.namespace}/{self.name}"

    @property
    def governance_identity(self) -> str:
        """Stable for the resource's life: derived from metadata.uid, which never changes."""
        return f"ga-{self.uid}"


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
            secret=f"{agent_name}-api-key",
            config_map=f"{agent_name}-governance",
            deployment=agent_name,
            service=agent_name,
            network_policy=f"{agent_name}-quarantine",
        )


def selector_labels(agent: Agent) -> dict[str, str]:
    """The immutable Deployment selector; also what the Service and NetworkPolicy select."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": agent.name}


def labels(agent: Agent, component: str) -> dict[str, str]:
    """Standard recommended labels plus the operator's own, on every child."""
    return {
        **selector_labels(agent),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
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
