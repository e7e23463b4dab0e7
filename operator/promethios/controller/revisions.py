"""Revision history and rollback on breach (pure): which revision runs, what status says.

Each reconcile that can build the workload asks :func:`choose_running` what to build it
from: the spec's own revision, or, while an automatic rollback is in force, the revision
it restored (from its ControllerRevision, read by the reconcile beforehand: see
:func:`hashes_to_read`). :func:`record` then updates ``status.revisions`` (a new entry when
the running revision changes, the finished one's figures frozen) and says which
ControllerRevisions to write and prune: the running revision's content rides on its
Deployment (an External agent's ConfigMap), and its ControllerRevision is written from
there once a newer revision supersedes it (before that child is rewritten: see the
reconcile's ``execute``).

Rollback on breach (``spec.rollout.rollbackOnBreach``): the newest revision rolls back to
the revision before it (the newest earlier one with other content) when, within
``rollbackWindowSeconds`` of its start, the ingest API records a breach
(``status.enforcement.breach`` grows) or a critical violation (which counts even while an
earlier breach is unacknowledged and holds the breach counter). A revision that is itself
a restoration is never rolled back automatically (no loops). The spec is not touched: the
rollback holds, as ``status.rollout.rolledBack``, while the spec and policy still hash to
the revision that breached; any change to them ends it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.agent import Agent
from ..api.conditions import ROLLED_BACK, format_time, parse_time
from ..api.policy import GovernancePolicySpec
from ..api.rollout import Runtime
from ..builders.meta import Manifest
from ..builders.revision import (
    annotated_revision,
    build_controller_revision,
    controller_revision_name,
    restore_spec,
    revision_data,
    revision_hash,
    stored_policy,
)
from .conditions import ConditionValue

#: Event reasons.
ROLLBACK_UNAVAILABLE = "RollbackUnavailable"


@dataclass(frozen=True)
class Running:
    """What the workload is built from this time."""

    agent: Agent
    policy_name: str
    policy: GovernancePolicySpec
    digest: str
    data: Mapping[str, Any]
    #: ``status.rollout.rolledBack`` to write (camelCase); None when none is in force.
    pin: Mapping[str, Any] | None = None
    #: The rollback was decided by this reconcile (a new entry says ``automatic``).
    rolled_back_now: bool = False
    #: Warning Events (reason, message) this decision raises.
    warnings: tuple[tuple[str, str], ...] = ()


@dataclass
class RevisionWrites:
    """What the reconcile writes for the history besides status."""

    apply: list[Manifest] = field(default_factory=list)
    #: ControllerRevision names to delete (pruned from the history).
    delete: list[str] = field(default_factory=list)


def records_of(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``status.revisions`` as stored (raw dicts, newest first)."""
    return [dict(r) for r in status.get("revisions") or [] if isinstance(r, Mapping)]


def pin_of(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The automatic rollback recorded in status, if any."""
    pin = (status.get("rollout") or {}).get("rolledBack")
    return pin if isinstance(pin, Mapping) and pin.get("toHash") else None


def desired_revision(agent: Agent, policy: GovernancePolicySpec) -> tuple[str, dict[str, Any]]:
    """The hash and content of the revision the spec asks for."""
    data = revision_data(agent.spec, agent.spec.governance.policy_ref.name, policy)
    return revision_hash(data), data


def counters(status: Mapping[str, Any]) -> dict[str, int]:
    """The ingest API's counters a revision's start records."""
    violations = (status.get("governance") or {}).get("violations") or {}
    return {
        "violations": int(violations.get("total") or 0),
        "critical": int(violations.get("critical") or 0),
        "breach": int((status.get("enforcement") or {}).get("breach") or 0),
    }


def rollback_target(
    agent: Agent, status: Mapping[str, Any], desired: str
) -> Mapping[str, Any] | None:
    """The record a breach of the newest revision rolls back to (before the window check):
    None unless rollback on breach applies and the newest revision breached."""
    records = records_of(status)
    if not agent.spec.rollout.rollback_on_breach or agent.spec.runtime == Runtime.EXTERNAL:
        return None
    if not records or records[0].get("hash") != desired or records[0].get("restoredFrom"):
        return None
    head, now = records[0], counters(status)
    start = head.get("start") or {}
    breached = now["breach"] > int(start.get("breach") or 0) or now["critical"] > int(
        start.get("critical") or 0
    )
    if not breached:
        return None
    return next((r for r in records[1:] if r.get("hash") != head.get("hash")), None)


def hashes_to_read(
    agent: Agent, status: Mapping[str, Any], policy: GovernancePolicySpec | None
) -> list[str]:
    """Hashes of the ControllerRevisions the plan may restore (none in the common case)."""
    if policy is None:
        return []
    desired, _ = desired_revision(agent, policy)
    pin = pin_of(status)
    if pin is not None and pin.get("fromHash") == desired:
        return [str(pin["toHash"])]
    target = rollback_target(agent, status, desired)
    return [str(target["hash"])] if target is not None else []


def choose_running(
    agent: Agent,
    policy: GovernancePolicySpec,
    status: Mapping[str, Any],
    stored: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> Running:
    """The revision to run: a rollback in force, a rollback due now, or the spec's own."""
    desired, data = desired_revision(agent, policy)
    own = Running(agent, agent.spec.governance.policy_ref.name, policy, desired, data)
    pin = pin_of(status)
    if pin is not None and pin.get("fromHash") == desired:
        restored = _restore(agent, stored.get(str(pin["toHash"])), pin, now)
        return restored or _unavailable(own, pin)
    target = rollback_target(agent, status, desired)
    if target is None or not _within_window(agent, status, now):
        return own
    head = records_of(status)[0]
    new_pin = {
        "fromRevision": head["revision"],
        "fromHash": head["hash"],
        "toRevision": target["revision"],
        "toHash": target["hash"],
        "breach": counters(status)["breach"],
        "at": format_time(now),
    }
    restored = _restore(agent, stored.get(str(target["hash"])), new_pin, now)
    if restored is None:
        return _unavailable(own, new_pin)
    message = (
        f"revision {head['revision']} breached its policy within "
        f"{agent.spec.rollout.rollback_window_seconds} s of its start: rolled back to "
        f"revision {target['revision']} (image {target.get('image')}); it runs until the "
        "spec or policy changes"
    )
    return dataclasses.replace(restored, rolled_back_now=True, warnings=((ROLLED_BACK, message),))


def _within_window(agent: Agent, status: Mapping[str, Any], now: datetime) -> bool:
    started = parse_time(str(records_of(status)[0].get("createdAt") or ""))
    window = agent.spec.rollout.rollback_window_seconds
    return started is not None and (now - started).total_seconds() <= window


def _restore(
    agent: Agent, data: Mapping[str, Any] | None, pin: Mapping[str, Any], now: datetime
) -> Running | None:
    """The agent as the stored revision had it; None when it is gone or invalid."""
    if not data:
        return None
    try:
        spec = restore_spec(data.get("spec") or {}, agent.spec)
        policy_name, policy = stored_policy(data)
    except ValidationError:
        return None
    restored = dataclasses.replace(agent, spec=spec)
    return Running(restored, policy_name, policy, str(pin["toHash"]), data, pin)


def _unavailable(own: Running, pin: Mapping[str, Any]) -> Running:
    message = (
        f"revision {pin['toRevision']}'s ControllerRevision is missing or invalid: "
        f"running the spec's revision {pin['fromRevision']}"
    )
    return dataclasses.replace(own, warnings=((ROLLBACK_UNAVAILABLE, message),))


def record(
    agent: Agent,
    running: Running,
    status: Mapping[str, Any],
    config_hash: str,
    now: datetime,
    carriers: Sequence[Mapping[str, Any]] = (),
    annotated: bool = False,
) -> tuple[dict[str, Any], RevisionWrites]:
    """``status.revisions`` and ``status.rollout`` for this reconcile, and the
    ControllerRevision writes (only when the running revision changes).

    ``carriers`` are the live children that may carry the superseded revision's content;
    ``annotated``: the running revision's content rides on a desired child
    (:func:`~promethios.builders.revision.annotate_revision`), else (too large) its
    ControllerRevision is written now.
    """
    records, writes = records_of(status), RevisionWrites()
    head = records[0] if records else None
    if head is None or head.get("hash") != running.digest:
        superseded = _superseded(agent, head, carriers)
        if superseded is not None:
            writes.apply.append(superseded)
        records = _start_revision(records, running, status, config_hash, now)
        number = int(records[0]["revision"])
        if not annotated:
            writes.apply.append(
                build_controller_revision(agent, running.digest, number, running.data)
            )
        limit = agent.spec.rollout.revision_history_limit
        kept, dropped = records[:limit], records[limit:]
        kept_hashes = {r.get("hash") for r in kept}
        writes.delete = sorted(
            {
                controller_revision_name(agent.name, str(r["hash"]))
                for r in dropped
                if r.get("hash") and r.get("hash") not in kept_hashes
            }
        )
        records = kept
    rollout: dict[str, Any] = {"revision": records[0]["revision"]}
    if running.pin is not None:
        rollout["rolledBack"] = dict(running.pin)
    return {"revisions": records, "rollout": rollout}, writes


def _superseded(
    agent: Agent, head: Mapping[str, Any] | None, carriers: Sequence[Mapping[str, Any]]
) -> Manifest | None:
    """The ControllerRevision of the revision a new one supersedes, from the content a
    live child carries; None when there is none to write (no earlier revision, or its
    ControllerRevision was written when it started: too large, or an older operator)."""
    if head is None or not head.get("hash"):
        return None
    found = (annotated_revision(child, str(head["hash"])) for child in carriers)
    data = next((d for d in found if d is not None), None)
    if data is None:
        return None
    return build_controller_revision(agent, str(head["hash"]), int(head["revision"]), data)


def _start_revision(
    records: list[dict[str, Any]],
    running: Running,
    status: Mapping[str, Any],
    config_hash: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """A new newest entry; the previous newest gets what it saw, frozen."""
    start = counters(status)
    entry: dict[str, Any] = {
        "revision": int(records[0]["revision"]) + 1 if records else 1,
        "hash": running.digest,
        "image": running.agent.spec.image,
        "policy": running.policy_name,
        "configHash": config_hash,
        "createdAt": format_time(now),
        "start": start,
    }
    earlier = next((r for r in records if r.get("hash") == running.digest), None)
    if earlier is not None:
        entry["restoredFrom"] = earlier["revision"]
    if running.rolled_back_now:
        entry["automatic"] = True
    if not records:
        return [entry]
    head = dict(records[0])
    began = head.get("start") or {}
    head["supersededAt"] = format_time(now)
    head["violations"] = max(0, start["violations"] - int(began.get("violations") or 0))
    head["breaches"] = max(0, start["breach"] - int(began.get("breach") or 0))
    trust = (status.get("governance") or {}).get("trustScore")
    if trust is not None:
        head["trustScore"] = trust
    return [entry, head, *records[1:]]


def carried(status: Mapping[str, Any]) -> dict[str, Any]:
    """The history as stored, for a reconcile that cannot build the workload (so the
    operator's apply does not drop it)."""
    out: dict[str, Any] = {}
    if status.get("revisions"):
        out["revisions"] = records_of(status)
    if status.get("rollout"):
        out["rollout"] = dict(status["rollout"])
    return out


def degraded_by_rollback(running: Running) -> ConditionValue | None:
    """Degraded while an automatic rollback is in force."""
    pin = running.pin
    if pin is None:
        return None
    return ConditionValue(
        "True",
        ROLLED_BACK,
        f"revision {pin['fromRevision']} breached (breach {pin['breach']}); revision "
        f"{pin['toRevision']} runs until the spec or policy changes",
    )
