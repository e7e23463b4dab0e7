"""Where an agent runs and how its revisions roll out: ``spec.runtime``, ``spec.rollout``,
``status.revisions`` and ``status.rollout``.

A *revision* is what a rollback restores: the agent's spec without the fields that are not
part of one (:data:`NON_REVISION_FIELDS`: replica count, suspend, key rotation, the breach
acknowledgement, these rollout settings) together with the policy it ran. A new one starts
whenever either changes; the operator keeps the spec and policy of each in a
ControllerRevision named after the revision's hash, and a short history in status.

Who writes what: the ingest API owns the counters (``status.governance``,
``status.enforcement``); the operator owns ``status.revisions`` and ``status.rollout`` and
only reads those counters, at each revision's boundaries: when a revision starts it
records them as its ``start``, when the next one starts it records what the finished one
saw (violations and breaches since its start, the trust score at its end). What the
current revision has seen so far is the live counters minus its ``start``
(:func:`seen_so_far`), so no report costs the operator a write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .common import Model


class Runtime(StrEnum):
    """Where the agent's code runs."""

    POD = "Pod"
    EXTERNAL = "External"


#: Top-level spec fields a revision does not include (a rollback keeps their current value).
NON_REVISION_FIELDS = ("replicas", "suspend", "apiKey", "rollout")
#: ``spec.governance`` fields a revision does not include.
NON_REVISION_GOVERNANCE_FIELDS = ("acknowledgedBreach",)


class RolloutSettings(Model):
    """How new revisions roll out (not part of a revision: a rollback keeps these)."""

    rollback_on_breach: bool = Field(
        False,
        description=(
            "Roll a new revision back automatically (to the revision before it) when the "
            "agent breaches its policy within rollbackWindowSeconds of the revision's start. "
            "The spec is left as it is: the previous revision runs until the spec changes. "
            "Not for runtime External (the operator does not run the agent)."
        ),
    )
    rollback_window_seconds: int = Field(
        1800,
        ge=60,
        le=7 * 86400,
        description="How long after a revision starts a breach rolls it back.",
    )
    revision_history_limit: int = Field(
        5, ge=2, le=20, description="Revisions kept in status.revisions (and their specs)."
    )


class RevisionStart(Model):
    """The ingest API's counters when a revision started."""

    violations: int = Field(0, ge=0, description="status.governance.violations.total then.")
    critical: int = Field(0, ge=0, description="status.governance.violations.critical then.")
    breach: int = Field(0, ge=0, description="status.enforcement.breach then.")


class RevisionRecord(Model):
    """One revision the agent ran, newest first in status.revisions (written by the operator)."""

    revision: int = Field(ge=1, description="Revision number (grows by one per revision).")
    hash: str = Field(max_length=64, description="Hash of the revision's spec and policy.")
    image: str = Field(max_length=1024, description="The agent's image.")
    policy: str = Field(max_length=253, description="The GovernancePolicy's name.")
    config_hash: str | None = Field(
        None, max_length=64, description="Hash of the sidecar config.json it started with."
    )
    created_at: datetime = Field(description="When the operator started rolling it out.")
    superseded_at: datetime | None = Field(None, description="When the next revision started.")
    restored_from: int | None = Field(
        None, ge=1, description="The earlier revision whose spec and policy this one restores."
    )
    automatic: bool | None = Field(
        None, description="True when the operator restored it after a breach (rollbackOnBreach)."
    )
    start: RevisionStart = Field(
        default_factory=RevisionStart, description="The ingest API's counters at its start."
    )
    violations: int | None = Field(
        None, ge=0, description="Violations recorded while it ran (set when superseded)."
    )
    breaches: int | None = Field(
        None, ge=0, description="Breaches while it ran (set when superseded)."
    )
    trust_score: float | None = Field(
        None, ge=0, le=1, description="The trust score when it was superseded."
    )


class RolledBack(Model):
    """An automatic rollback in force: the running revision is not the spec's."""

    from_revision: int = Field(ge=1, description="The revision that breached.")
    from_hash: str = Field(
        max_length=64,
        description="Its hash: the rollback holds while the spec and policy still hash to it.",
    )
    to_revision: int = Field(ge=1, description="The revision whose spec and policy run instead.")
    to_hash: str = Field(max_length=64, description="Its hash (names its ControllerRevision).")
    breach: int = Field(ge=0, description="The status.enforcement.breach that triggered it.")
    at: datetime = Field(description="When the operator rolled back.")


class RolloutStatus(Model):
    """The revision running now (written by the operator)."""

    revision: int | None = Field(None, ge=1, description="The running revision's number.")
    rolled_back: RolledBack | None = Field(
        None, description="Set while an automatic rollback is in force."
    )


def seen_so_far(record: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """What a revision (a ``status.revisions`` entry) has seen: its own figures once
    superseded, else the live counters minus its start (the trust score is the live one)."""
    if record.get("supersededAt"):
        return {
            "violations": record.get("violations"),
            "breaches": record.get("breaches"),
            "trustScore": record.get("trustScore"),
        }
    start = record.get("start") or {}
    governance = status.get("governance") or {}
    total = int((governance.get("violations") or {}).get("total") or 0)
    breach = int((status.get("enforcement") or {}).get("breach") or 0)
    return {
        "violations": max(0, total - int(start.get("violations") or 0)),
        "breaches": max(0, breach - int(start.get("breach") or 0)),
        "trustScore": governance.get("trustScore"),
    }


#: CEL rule on the spec: the operator cannot roll back an agent it does not run.
EXTERNAL_ROLLBACK_RULE = {
    "rule": "self.runtime != 'External' || !self.rollout.rollbackOnBreach",
    "message": "rollout.rollbackOnBreach needs runtime Pod (the operator does not run an "
    "External agent)",
    "fieldPath": ".rollout",
    "reason": "FieldValueForbidden",
}


class RuntimeRolloutSpec(Model):
    """``spec.runtime`` and ``spec.rollout``: the GovernedAgent spec's base class.

    Its JSON schema hook adds :data:`EXTERNAL_ROLLBACK_RULE` beside the spec's own CEL
    rules (a ``json_schema_extra`` of the subclass would replace, not extend, a base's).
    """

    runtime: Runtime = Field(
        Runtime.POD,
        description="Pod: the operator runs the agent; External: it runs elsewhere beside its "
        "own sidecar, and the operator issues only its key, its governance config and status.",
    )
    rollout: RolloutSettings = Field(default_factory=RolloutSettings, description="Revisions.")

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        rules = target.setdefault("x-kubernetes-validations", [])
        if EXTERNAL_ROLLBACK_RULE not in rules:
            rules.append(dict(EXTERNAL_ROLLBACK_RULE))
        return schema


class RevisionStatus(Model):
    """``status.revisions`` and ``status.rollout``: the GovernedAgent status's base class."""

    revisions: list[RevisionRecord] = Field(
        default_factory=list, max_length=20, description="Recent revisions, newest first."
    )
    rollout: RolloutStatus | None = Field(None, description="The revision running now.")
