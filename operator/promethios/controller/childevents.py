"""What a watch event on a child (or on any Secret) means to the operator: pure decisions.

The children and all Secrets are watched by the operator's own informers
(:mod:`.informers`), not by kopf. Each event is turned into a :class:`Dispatch` here, and
the handler logic (:func:`.handlers.handle_child`) carries it out on a worker thread:

- a managed Deployment (its agent's, by name): reconcile the agent with the Deployment
  as known (none when deleted), its pod counts written a moment later;
- a managed Pod that changed or went: report a stopped sidecar's undelivered data;
- a managed ConfigMap, Service or Secret deleted (its agent's, by name): reconcile the
  owner so that it is recreated;
- any Secret added, changed or deleted: reconcile the agents referring to it.

A label or a name alone never reaches another namespace: every agent named here is in
the namespace of the object the event is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.metadata import LABEL_AGENT, LABEL_MANAGED_BY, MANAGED_BY
from ..builders.meta import ChildNames

#: The kinds the informers watch, and the ChildNames attribute of each child kind.
CHILD_NAME = {
    "Secret": "secret",
    "ConfigMap": "config_map",
    "Deployment": "deployment",
    "Service": "service",
    "NetworkPolicy": "network_policy",
}
WATCHED = (*CHILD_NAME, "Pod")


def managed(labels: Mapping[str, str]) -> bool:
    """Whether an object carries the operator's managed-by label (anyone can set it)."""
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY


@dataclass(frozen=True)
class ChildEvent:
    """The parts of a watch event the decisions use."""

    kind: str
    type: str
    namespace: str
    name: str
    labels: Mapping[str, str]

    @classmethod
    def of(cls, kind: str, type_: str, body: Mapping[str, Any]) -> ChildEvent:
        """From a watch event's type and object."""
        metadata = body.get("metadata") or {}
        return cls(
            kind=kind,
            type=type_,
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            labels=dict(metadata.get("labels") or {}),
        )

    def owner(self) -> str | None:
        """The agent this object is a child of: managed, labelled, and named as its child."""
        agent = self.labels.get(LABEL_AGENT)
        if not agent or not managed(self.labels) or self.kind not in CHILD_NAME:
            return None
        return agent if getattr(ChildNames.of(agent), CHILD_NAME[self.kind]) == self.name else None


@dataclass(frozen=True)
class Dispatch:
    """What to do about one event (every agent named is in the event's namespace)."""

    #: Agents to reconcile by name.
    reconcile: tuple[str, ...] = ()
    #: Also reconcile the agents whose spec refers to this object (a Secret).
    referencing: bool = False
    #: Hand the event's Deployment to the reconcile as known, pod counts deferred.
    known_deployment: bool = False
    #: The rollout changed: pod counts alone are written a moment later.
    defer_progress: bool = False
    #: Report a stopped pod's undelivered sidecar data.
    report_pod: bool = False

    @property
    def nothing(self) -> bool:
        return not (self.reconcile or self.referencing or self.report_pod)

    @property
    def needs_body(self) -> bool:
        """Whether carrying it out needs the event's object (else only its key)."""
        return self.known_deployment or self.report_pod


def decide(event: ChildEvent) -> Dispatch:
    """What an event means; ``Dispatch()`` (nothing) for most."""
    owner = event.owner()
    if event.kind == "Deployment":
        if owner is None:
            return Dispatch()
        alive = event.type != "DELETED"
        return Dispatch(reconcile=(owner,), known_deployment=alive, defer_progress=True)
    if event.kind == "Pod":
        changed = event.type in ("MODIFIED", "DELETED") and managed(event.labels)
        return Dispatch(report_pod=changed)
    recreate = (owner,) if owner is not None and event.type == "DELETED" else ()
    if event.kind == "Secret":
        return Dispatch(reconcile=recreate, referencing=True)
    if event.kind in ("ConfigMap", "Service"):
        return Dispatch(reconcile=recreate)
    return Dispatch()  # NetworkPolicy: cached only; the resync repairs it


def keeps_body(kind: str, labels: Mapping[str, str]) -> bool:
    """Whether the informer keeps the object's (packed) body for the cache: the managed
    children only; of other Secrets only the data keys, of Pods nothing."""
    return kind in CHILD_NAME and managed(labels)


def secret_keys(body: Mapping[str, Any]) -> frozenset[str]:
    """A Secret's data keys (never its values)."""
    return frozenset(body.get("data") or {}) | frozenset(body.get("stringData") or {})
