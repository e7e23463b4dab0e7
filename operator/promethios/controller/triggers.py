"""Which watch events call for a reconcile, decided from the event alone (no API reads):
the references an agent's spec names (for the index from referenced objects to their
agents), the enforcement and critical count an agent's status carries, and whether a
GovernancePolicy event changed its spec or only its status.

Pure functions, so the handlers in :mod:`.handlers` stay thin and every decision is a
unit test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.enforcement import EnforcementAction
from .blockers import stored_enforcement

IndexKey = tuple[str, str, str]


ObjectKey = tuple[str, str]


def references_of(namespace: str, spec: Mapping[str, Any]) -> list[IndexKey]:
    """(kind, namespace, name) of every object an agent's spec refers to."""
    keys: list[IndexKey] = []
    policy = ((spec.get("governance") or {}).get("policyRef") or {}).get("name")
    if policy:
        keys.append(("GovernancePolicy", namespace, policy))
    secret = ((spec.get("modelProvider") or {}).get("credentialsSecretRef") or {}).get("name")
    if secret:
        keys.append(("Secret", namespace, secret))
    for sink in spec.get("alertSinks") or []:
        if sink.get("name"):
            keys.append(("AlertSink", namespace, sink["name"]))
    return keys


def enforcement_key(status: Mapping[str, Any]) -> tuple[EnforcementAction, int]:
    """The part of status.enforcement (written by the ingest API) the operator acts on."""
    enforcement = stored_enforcement(status)
    return EnforcementAction(enforcement.action), enforcement.breach


def critical_count(body: Mapping[str, Any]) -> int | None:
    """An agent's critical violations, watched when ``spec.rollout.rollbackOnBreach`` is on
    (one may roll its revision back although an unacknowledged breach holds the breach
    counter still); None otherwise."""
    rollout = (body.get("spec") or {}).get("rollout") or {}
    if not rollout.get("rollbackOnBreach"):
        return None
    governance = (body.get("status") or {}).get("governance") or {}
    return int((governance.get("violations") or {}).get("critical") or 0)


def needs_reconcile(
    event_type: str | None,
    body: Mapping[str, Any],
    previous_enforcement: tuple[EnforcementAction, int] | None,
) -> bool:
    """Whether an agent's watch event calls for a reconcile (decided without API reads).

    The initial listing (``None``: new to this operator process) and a spec change
    (``metadata.generation`` ahead of ``status.observedGeneration``) do; so does a new
    enforcement from the ingest API. Every other event, e.g. the ingest API's heartbeats
    or the operator's own status writes, is a no-op.
    """
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return False
    if event_type is None:
        return True
    if status.get("observedGeneration") != metadata.get("generation", 1):
        return True
    return previous_enforcement is not None and previous_enforcement != enforcement_key(status)


def policy_spec_changed(
    generations: dict[ObjectKey, Any], event_type: str | None, key: ObjectKey, generation: Any
) -> bool:
    """Whether a GovernancePolicy event changes what its agents are built from.

    Only a spec change moves ``metadata.generation``; status writes (budget usage, every
    exchange of a shared budget; conditions) must not reconcile every agent using the
    policy. The initial listing is covered by the agents' own events.
    """
    if event_type == "DELETED":
        generations.pop(key, None)
        return True
    previous = generations.get(key)
    generations[key] = generation
    if event_type is None:
        return False
    return event_type == "ADDED" or previous is None or previous != generation
