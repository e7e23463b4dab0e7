"""The reconcile's data: what was observed for one agent, and the plan of what to write.

Plain dataclasses shared by the pure planning (:mod:`.plan`, :mod:`.blockers`) and the
reconcile that executes a plan (:mod:`.reconcile`); nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..api.agent import Agent
from ..api.policy import GovernancePolicySpec
from ..builders.meta import Manifest
from . import conditions as cond
from . import revisions as history

WARNING = "Warning"


NORMAL = "Normal"


class References(Protocol):
    """Where the reconcile looks up the objects an agent refers to."""

    def policy_spec(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A GovernancePolicy's spec; None when it does not exist."""

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """A Secret's data keys (never values); None when it does not exist."""

    def alert_sink_exists(self, namespace: str, name: str) -> bool:
        """Whether an AlertSink exists."""


@dataclass(frozen=True)
class Observed:
    """Everything the reconcile read from the API server for one agent."""

    agent: Agent
    #: The policy's spec; None when the GovernancePolicy does not exist.
    policy: GovernancePolicySpec | None
    #: Data keys of the provider Secret; None when it does not exist (or none is referenced).
    provider_secret_keys: frozenset[str] | None
    missing_alert_sinks: tuple[str, ...] = ()
    #: Live children by kind ("Secret", "ConfigMap", "Deployment", "Service", "NetworkPolicy").
    live: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    #: The agent's whole status as read (ingest-owned parts included, read-only here).
    status: Mapping[str, Any] = field(default_factory=dict)
    #: Stored revisions a rollback may restore: ControllerRevision data by revision hash.
    revisions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the agent (messages never contain key material)."""

    type: str
    reason: str
    message: str


@dataclass
class Plan:
    """What the reconcile must write. Empty lists and None mean: write nothing."""

    apply: list[Manifest] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)
    #: Scale the live Deployment to this many replicas without re-applying it (the workload
    #: cannot be built, e.g. its policy is gone, but enforcement or suspend needs zero).
    scale_to: int | None = None
    #: The operator-owned status to server-side-apply; None when unchanged.
    status: dict[str, Any] | None = None
    #: A merge patch for status.enforcement (release only); None otherwise.
    release: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    #: A missing reference: the handler retries with backoff.
    blocker: cond.Blocker | None = None
    #: When the previous API key expires (the next reconcile after it drops the hash).
    next_key_expiry: datetime | None = None
    #: ControllerRevisions to write and prune (the revision history, :mod:`.revisions`).
    revisions: history.RevisionWrites = field(default_factory=history.RevisionWrites)

    @property
    def writes_nothing(self) -> bool:
        """No child, status, release or Event to write: the agent is in sync."""
        return not (self.apply or self.delete or self.events or self.revisions.apply) and (
            self.status is None and self.release is None and self.scale_to is None
        )
