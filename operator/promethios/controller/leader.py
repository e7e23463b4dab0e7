"""Leader election on a ``coordination.k8s.io/v1`` Lease: the pure decisions.

Several operator replicas may run; only the holder of the Lease reconciles. This module
decides, from what a replica reads of the Lease and an injected clock, what it writes
(create, renew, take over, release) — it never talks to the API server itself
(:mod:`.election` does, through :mod:`..kube.lease`).

The rules are client-go's, so the Lease means what controller-runtime users expect:

- a missing Lease is created with this replica as holder; a Lease with no holder (released)
  is taken at once;
- another holder's Lease is live until ``leaseDurationSeconds`` have passed *on this
  replica's clock* since it last saw the Lease change (its ``renewTime`` comes from another
  machine's clock and is never compared with ours);
- every write carries the resourceVersion read, so of two replicas taking one expired
  Lease only one succeeds;
- a leader that has not renewed for ``renew_deadline`` has lost the Lease and must stop
  reconciling at once (it still has ``lease_duration - renew_deadline`` before a standby
  may take over).
"""

from __future__ import annotations

import enum
import os
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
#: client-go requires retry_period * JITTER < renew_deadline < lease_duration.
JITTER = 1.2


@dataclass(frozen=True)
class ElectionSettings:
    """Where the Lease lives, who this replica is, and the timing (seconds)."""

    name: str = "promethios-operator-leader"
    namespace: str = "promethios-system"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problem(self) -> str | None:
        """What is wrong with the timing or names (the message names the flag), or None."""
        if not self.name or not self.namespace or not self.identity:
            return "--leader-election-lease-name, -namespace and -identity must not be empty"
        if self.retry_period <= 0:
            return f"--leader-election-retry-period must be > 0 (got {self.retry_period})"
        if self.lease_duration < 1:
            return f"--leader-election-lease-duration must be >= 1 s (got {self.lease_duration})"
        if self.renew_deadline >= self.lease_duration:
            return (
                f"--leader-election-renew-deadline ({self.renew_deadline}) must be less than "
                f"--leader-election-lease-duration ({self.lease_duration})"
            )
        if self.renew_deadline <= self.retry_period * JITTER:
            return (
                f"--leader-election-renew-deadline ({self.renew_deadline}) must exceed "
                f"{JITTER} x --leader-election-retry-period ({self.retry_period})"
            )
        return None


def default_identity() -> str:
    """The pod's name (``$POD_NAME``, else the host name) and a random suffix: a restarted
    container is a new candidate, never mistaken for the holder it replaced."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec as the election reads and writes it."""

    holder: str = ""
    duration_seconds: int = 15
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None


@dataclass(frozen=True)
class Observed:
    """The Lease as this replica last saw it change, and when (its monotonic clock)."""

    record: LeaseRecord | None
    at: float


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    WAIT = "wait"


@dataclass(frozen=True)
class Decision:
    """What to write (``record``, None when waiting) and why."""

    action: Action
    record: LeaseRecord | None
    reason: str

    @property
    def leads(self) -> bool:
        """Whether this replica holds the Lease once the write succeeds."""
        return self.action is not Action.WAIT


def observe(previous: Observed | None, current: LeaseRecord | None, now: float) -> Observed:
    """What this replica knows after reading ``current`` at ``now``: the observation time
    moves only when the Lease changed (another holder renewing it keeps it alive)."""
    if previous is not None and previous.record == current:
        return previous
    return Observed(current, now)


def expired(observed: Observed, now: float) -> bool:
    """Whether the observed holder has let its Lease run out (by this replica's clock)."""
    record = observed.record
    if record is None or not record.holder:
        return True
    return observed.at + record.duration_seconds <= now


def decide(settings: ElectionSettings, observed: Observed, now: float, wall: datetime) -> Decision:
    """The next write of a candidate (or of the leader renewing) given what it observed.

    ``now`` is the monotonic clock, ``wall`` the UTC time written into the Lease.
    """
    record = observed.record
    duration = max(1, round(settings.lease_duration))
    mine = LeaseRecord(settings.identity, duration, wall, wall, 0)
    if record is None:
        return Decision(Action.CREATE, mine, "no Lease yet")
    if record.holder == settings.identity:
        renewed = replace(record, duration_seconds=duration, renew_time=wall)
        return Decision(Action.UPDATE, renewed, "renew")
    if record.holder and not expired(observed, now):
        return Decision(Action.WAIT, None, f"held by {record.holder}")
    taken = replace(
        mine,
        transitions=record.transitions + 1,
        resource_version=record.resource_version,
    )
    reason = f"take over from {record.holder}: expired" if record.holder else "released"
    return Decision(Action.UPDATE, taken, reason)


def renewal_overdue(settings: ElectionSettings, last_renewed: float, now: float) -> bool:
    """Whether a leader that last renewed at ``last_renewed`` has lost the Lease."""
    return now - last_renewed >= settings.renew_deadline


def released(record: LeaseRecord, wall: datetime) -> LeaseRecord:
    """The Lease a stopping leader writes: no holder, so a standby takes it at its next try
    (client-go's ReleaseOnCancel: duration 1 s, times now)."""
    return replace(record, holder="", duration_seconds=1, acquire_time=wall, renew_time=wall)


def record_from_lease(lease: dict[str, Any] | None) -> LeaseRecord | None:
    """The election's view of a Lease object (None: there is none)."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_parse_time(spec.get("acquireTime")),
        renew_time=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
    )


def lease_manifest(settings: ElectionSettings, record: LeaseRecord) -> dict[str, Any]:
    """The Lease object to create or replace (with the read resourceVersion, if any)."""
    metadata: dict[str, Any] = {
        "name": settings.name,
        "namespace": settings.namespace,
        "labels": {"app.kubernetes.io/managed-by": "promethios-operator"},
    }
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "leaseTransitions": record.transitions,
    }
    for field, value in (("acquireTime", record.acquire_time), ("renewTime", record.renew_time)):
        if value is not None:
            spec[field] = value.astimezone(UTC).strftime(MICROTIME)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


def _parse_time(value: Any) -> datetime | None:
    """A MicroTime as the API server returns it (a string, or a datetime from the client)."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    return datetime.fromisoformat(text)
