"""Pure condition logic: the operator's ``Ready``, ``Progressing`` and ``Degraded``.

Types and reasons are :mod:`promethios.api.conditions`'s. The ingest API's condition types
(``HeartbeatFresh``, ``PolicyCompliant``) are never touched here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.conditions import (
    AS_EXPECTED,
    AVAILABLE,
    DEADLINE_EXCEEDED,
    DEGRADED,
    EXTERNAL_RUNTIME,
    PODS_NOT_READY,
    PROGRESSING,
    READY,
    ROLLING_OUT,
    ROLLOUT_COMPLETE,
    SCALED_TO_ZERO,
    transition_time,
)


@dataclass(frozen=True)
class ConditionValue:
    """A condition's status, reason and message, before timestamps are attached."""

    status: str
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Blocker:
    """Why the agent cannot be reconciled or run: a missing reference or enforcement."""

    reason: str
    message: str
    degraded: bool = True


@dataclass(frozen=True)
class Rollout:
    """The facts of a Deployment's status that readiness depends on."""

    exists: bool
    desired: int
    replicas: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    observed_current: bool = False
    deadline_exceeded: bool = False

    @property
    def complete(self) -> bool:
        """Every pod runs the newest template and is available; no old pods remain."""
        return (
            self.exists
            and self.observed_current
            and self.updated >= self.desired
            and self.available >= self.desired
            and self.replicas <= self.desired
        )


def rollout_of(deployment: Mapping[str, Any] | None) -> Rollout:
    """Read a live Deployment (or its absence) into a :class:`Rollout`."""
    if not deployment:
        return Rollout(exists=False, desired=0)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    deadline = any(
        c.get("type") == "Progressing" and c.get("reason") == DEADLINE_EXCEEDED
        for c in status.get("conditions") or []
    )
    return Rollout(
        exists=True,
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        observed_current=int(status.get("observedGeneration", 0)) >= int(generation),
        deadline_exceeded=deadline,
    )


def desired_conditions(
    blocker: Blocker | None, rollout: Rollout, external: bool = False
) -> dict[str, ConditionValue]:
    """Ready/Progressing/Degraded from what blocks the agent, else from the rollout (or,
    for an External agent, from its issued key and config: the operator runs nothing)."""
    if blocker is not None:
        return {
            READY: ConditionValue("False", blocker.reason, blocker.message),
            PROGRESSING: ConditionValue("False", blocker.reason, blocker.message),
            DEGRADED: ConditionValue(
                "True" if blocker.degraded else "False",
                blocker.reason if blocker.degraded else AS_EXPECTED,
                blocker.message if blocker.degraded else "",
            ),
        }
    if external:
        return external_conditions()
    return {
        READY: _ready(rollout),
        PROGRESSING: _progressing(rollout),
        DEGRADED: _degraded(rollout),
    }


def external_conditions() -> dict[str, ConditionValue]:
    """``runtime: External``: Ready once its key and config are issued; whether its
    sidecar reports is the ingest API's HeartbeatFresh."""
    return {
        READY: ConditionValue(
            "True",
            EXTERNAL_RUNTIME,
            "the agent runs outside the cluster: its API key and governance config are "
            "issued (HeartbeatFresh says whether its sidecar reports)",
        ),
        PROGRESSING: ConditionValue(
            "False", EXTERNAL_RUNTIME, "no workload: the agent runs outside the cluster"
        ),
        DEGRADED: ConditionValue("False", AS_EXPECTED, ""),
    }


def _ready(rollout: Rollout) -> ConditionValue:
    if not rollout.exists:
        return ConditionValue("False", PODS_NOT_READY, "the Deployment is being created")
    if rollout.desired == 0:
        return ConditionValue("True", SCALED_TO_ZERO, "the agent is scaled to zero replicas")
    message = f"{rollout.ready}/{rollout.desired} agent pods ready"
    if rollout.observed_current and rollout.ready >= rollout.desired:
        return ConditionValue("True", AVAILABLE, message)
    return ConditionValue("False", PODS_NOT_READY, message)


def _progressing(rollout: Rollout) -> ConditionValue:
    if rollout.complete:
        return ConditionValue("False", ROLLOUT_COMPLETE, "the newest pod template is rolled out")
    message = f"{rollout.updated}/{rollout.desired} pods updated, {rollout.available} available"
    return ConditionValue("True", ROLLING_OUT, message)


def _degraded(rollout: Rollout) -> ConditionValue:
    if rollout.deadline_exceeded:
        return ConditionValue("True", DEADLINE_EXCEEDED, "the rollout exceeded its deadline")
    return ConditionValue("False", AS_EXPECTED, "")


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    type_: str,
    value: ConditionValue,
    now: str,
    observed_generation: int | None = None,
) -> list[dict[str, Any]]:
    """Conditions with ``type_`` set to ``value``.

    ``lastTransitionTime`` changes only when the status changes, as the API
    conventions require; the order of the other conditions is kept.
    """
    result: list[dict[str, Any]] = []
    found = False
    for existing in conditions:
        if existing.get("type") != type_:
            result.append(dict(existing))
            continue
        found = True
        transition = transition_time(
            existing.get("status"), existing.get("lastTransitionTime") or None, value.status, now
        )
        result.append(_condition(type_, value, transition, observed_generation))
    if not found:
        result.append(_condition(type_, value, now, observed_generation))
    return result


def _condition(
    type_: str, value: ConditionValue, transition: str, observed_generation: int | None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": type_,
        "status": value.status,
        "reason": value.reason,
        "message": value.message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    return condition


def owned_conditions(
    current: Iterable[Mapping[str, Any]],
    values: Mapping[str, ConditionValue],
    now: str,
    observed_generation: int | None,
) -> list[dict[str, Any]]:
    """Only the operator's conditions, updated from ``values`` (for a status apply)."""
    mine = [dict(c) for c in current if c.get("type") in values]
    for type_, value in values.items():
        mine = set_condition(mine, type_, value, now, observed_generation)
    order = {type_: index for index, type_ in enumerate(values)}
    return sorted(mine, key=lambda c: order[c["type"]])
