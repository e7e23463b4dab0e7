"""What stands between an agent and its workload: missing references, a sidecar image the
operator may not run, and breach enforcement in force (with the replicas it leaves and
the patch that releases an acknowledged breach).

Pure functions of the observed state; :func:`.plan.plan_agent` turns them into conditions,
Events and the replicas to apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.agent import Agent
from ..api.agentstatus import EnforcementStatus
from ..api.common import parse_or_default
from ..api.conditions import (
    ALERT_SINK_NOT_FOUND,
    ENFORCEMENT_SUSPENDED,
    POLICY_NOT_FOUND,
    PROVIDER_SECRET_NOT_FOUND,
    QUARANTINED,
    SIDECAR_IMAGE_NOT_ALLOWED,
    SUSPENDED,
)
from ..api.enforcement import EnforcementAction
from ..builders import BuildSettings
from . import conditions as cond
from .observed import Observed


@dataclass(frozen=True)
class EnforcementInForce:
    """The breach action in force once the agent's acknowledgement is taken into account."""

    action: EnforcementAction
    breach: int
    #: The stored action is acknowledged: the operator clears it (see :func:`release_patch`).
    release: bool


def stored_enforcement(status: Mapping[str, Any]) -> EnforcementStatus:
    """``status.enforcement`` as the ingest API stored it (its default if absent or invalid)."""
    return parse_or_default(EnforcementStatus, status.get("enforcement"))


def enforcement_of(observed: Observed) -> EnforcementInForce:
    """Active enforcement from status.enforcement, unless acknowledged in the spec."""
    stored = stored_enforcement(observed.status)
    action, breach = EnforcementAction(stored.action), stored.breach
    if action == EnforcementAction.NONE:
        return EnforcementInForce(EnforcementAction.NONE, breach, release=False)
    if observed.agent.spec.governance.acknowledged_breach >= breach:
        return EnforcementInForce(EnforcementAction.NONE, breach, release=True)
    return EnforcementInForce(action, breach, release=False)


def missing_reference(observed: Observed) -> cond.Blocker | None:
    """The first missing reference, naming the object, or None when all exist."""
    agent = observed.agent
    policy_name = agent.spec.governance.policy_ref.name
    if observed.policy is None:
        return cond.Blocker(
            POLICY_NOT_FOUND,
            f"GovernancePolicy {agent.namespace}/{policy_name} not found",
        )
    ref = agent.spec.model_provider.credentials_secret_ref
    if ref is not None:
        keys = observed.provider_secret_keys
        if keys is None:
            return cond.Blocker(
                PROVIDER_SECRET_NOT_FOUND, f"Secret {agent.namespace}/{ref.name} not found"
            )
        if ref.key not in keys:
            return cond.Blocker(
                PROVIDER_SECRET_NOT_FOUND,
                f"Secret {agent.namespace}/{ref.name} has no key {ref.key!r}",
            )
    if observed.missing_alert_sinks:
        names = ", ".join(f"{agent.namespace}/{n}" for n in observed.missing_alert_sinks)
        return cond.Blocker(ALERT_SINK_NOT_FOUND, f"AlertSink {names} not found")
    return None


def refused_sidecar_image(agent: Agent, settings: BuildSettings) -> cond.Blocker | None:
    """A ``spec.sidecar.image`` the operator may not run, or None.

    The sidecar receives the provider credential and the ingest API key, so an image that
    is neither the operator's own nor on its allowlist never reaches a pod template: the
    agent gets no workload (an existing Deployment is left as it is) until the spec or
    the allowlist changes.
    """
    image = agent.spec.sidecar.image
    if image is None or settings.sidecar_image_allowed(image):
        return None
    allowed = ", ".join([settings.sidecar_image, *settings.allowed_sidecar_images])
    return cond.Blocker(
        SIDECAR_IMAGE_NOT_ALLOWED,
        f"spec.sidecar.image {image!r} is not an allowed sidecar image (allowed: {allowed}); "
        "an operator administrator may allow it with --allowed-sidecar-image",
    )


def enforcement_blocker(agent: Agent, enforcement: EnforcementInForce) -> cond.Blocker | None:
    """Why the agent is scaled to zero on purpose (enforcement or spec.suspend)."""
    release = f"set spec.governance.acknowledgedBreach to {enforcement.breach} to release"
    if enforcement.action == EnforcementAction.QUARANTINED:
        return cond.Blocker(
            QUARANTINED, f"quarantined after breach {enforcement.breach}; {release}"
        )
    if enforcement.action == EnforcementAction.SUSPENDED:
        return cond.Blocker(
            ENFORCEMENT_SUSPENDED, f"suspended after breach {enforcement.breach}; {release}"
        )
    if agent.spec.suspend:
        return cond.Blocker(SUSPENDED, "spec.suspend is true: scaled to zero", degraded=False)
    return None


def desired_replicas(agent: Agent, enforcement: EnforcementInForce) -> int | None:
    """0 when suspended (by spec or by enforcement); else spec.replicas (None: leave it to
    the cluster). A quarantine keeps the pods: they are cut off, not removed (their state is
    there to look at, and their calls fail until the release)."""
    if agent.spec.suspend or enforcement.action == EnforcementAction.SUSPENDED:
        return 0
    return agent.spec.replicas


def release_patch(enforcement: EnforcementInForce) -> dict[str, Any]:
    """Clears the enforcement, keeping the breach counter the ingest API increments."""
    return {
        "status": {
            "enforcement": {
                "action": str(EnforcementAction.NONE),
                "breach": enforcement.breach,
                "reason": f"breach {enforcement.breach} acknowledged",
                "since": None,
            }
        }
    }
