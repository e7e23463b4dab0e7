"""``promethios rollback``: the revision history, and restoring a revision's spec (pure).

The operator records each revision in ``status.revisions`` and keeps its spec and policy
in a ControllerRevision (:mod:`promethios.builders.revision`). A rollback writes the
stored spec back into the GovernedAgent (keeping the fields no revision holds: replicas,
suspend, key rotation, the breach acknowledgement, rollout settings), so the operator
rolls the agent out again from it. ``kubectl rollout undo`` on the agent's Deployment
cannot do this: the operator owns the Deployment and puts the spec's template back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..api.governedagent import GovernedAgentSpec
from ..api.policy import GovernancePolicySpec
from ..api.rollout import seen_so_far
from ..builders.revision import restore_spec, stored_policy


class RollbackError(ValueError):
    """The rollback cannot be done as asked; the message says why."""


def records(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``status.revisions``, newest first."""
    return [r for r in status.get("revisions") or [] if isinstance(r, Mapping)]


def spec_hash(status: Mapping[str, Any]) -> str | None:
    """The hash of the revision the spec asks for (during an automatic rollback, the one
    that breached, not the one running)."""
    pin = (status.get("rollout") or {}).get("rolledBack") or {}
    if pin.get("fromHash"):
        return str(pin["fromHash"])
    history = records(status)
    return str(history[0]["hash"]) if history else None


def table(status: Mapping[str, Any]) -> str:
    """The history as a table: what ran, from when, and what each revision saw."""
    history = records(status)
    if not history:
        return "no revisions recorded yet"
    rows = [("REVISION", "CREATED", "IMAGE", "POLICY", "VIOLATIONS", "BREACHES", "TRUST", "NOTE")]
    running = (status.get("rollout") or {}).get("revision")
    for record in history:
        seen = seen_so_far(record, status)
        notes = []
        if record.get("revision") == running:
            notes.append("running")
        if record.get("restoredFrom"):
            how = "automatically" if record.get("automatic") else "by rollback"
            notes.append(f"restores {record['restoredFrom']} {how}")
        trust = seen.get("trustScore")
        rows.append(
            (
                str(record.get("revision")),
                str(record.get("createdAt") or ""),
                str(record.get("image") or ""),
                str(record.get("policy") or ""),
                _count(seen.get("violations")),
                _count(seen.get("breaches")),
                f"{trust:.2f}" if isinstance(trust, int | float) else "-",
                ", ".join(notes),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def pick_target(status: Mapping[str, Any], to_revision: int | None) -> Mapping[str, Any]:
    """The record to restore: ``to_revision``, or the newest one whose content differs
    from what the spec asks for."""
    history = records(status)
    if not history:
        raise RollbackError(
            "no revision history yet (status.revisions is empty): the operator records "
            "one when it reconciles the agent"
        )
    current = spec_hash(status)
    if to_revision is None:
        target = next((r for r in history if r.get("hash") != current), None)
        if target is None:
            raise RollbackError("no earlier revision with other content to roll back to")
        return target
    target = next((r for r in history if r.get("revision") == to_revision), None)
    if target is None:
        kept = ", ".join(str(r.get("revision")) for r in history)
        raise RollbackError(f"revision {to_revision} is not in the history (kept: {kept})")
    if target.get("hash") == current:
        raise RollbackError(f"the spec already asks for revision {to_revision}'s content")
    return target


def rolled_back(body: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The GovernedAgent with the stored revision's spec (for a PUT: its
    resourceVersion makes it fail if the agent changed since it was read)."""
    current = GovernedAgentSpec.model_validate(body.get("spec") or {})
    spec = restore_spec(data.get("spec") or {}, current)
    out = copy.deepcopy(dict(body))
    out.pop("status", None)
    out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    out["spec"] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def commit_manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    """The agent as a GitOps repository holds it: identity and spec (defaults left out)."""
    metadata = body["metadata"]
    spec = GovernedAgentSpec.model_validate(body.get("spec") or {})
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
        "spec": spec.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude_defaults=True
        ),
    }


def policy_note(data: Mapping[str, Any], current: Mapping[str, Any] | None) -> str | None:
    """Why the restored revision's policy is not the current one, or None when it is.

    A policy may be shared by several agents, so a rollback never rewrites it."""
    name, stored = stored_policy(data)
    if current is not None and GovernancePolicySpec.model_validate(current) == stored:
        return None
    return (
        f"the revision ran GovernancePolicy {name!r} with other content than it has now; "
        "a rollback does not change a policy (others may share it): its spec then is in "
        "the ControllerRevision's data.policy"
    )
