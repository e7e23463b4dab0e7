"""Pure planning: from what was read (the agent, its references, its live children)
to what must be written (children to apply or delete, status, events).

Nothing here performs I/O, so every decision of the reconcile is unit-testable with
plain dicts and an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.agent import Agent, name_problem
from ..api.common import parse_or_default
from ..api.conditions import (
    ALERT_SINK_NOT_FOUND,
    DEGRADED,
    ENFORCEMENT_SUSPENDED,
    INVALID_NAME,
    POLICY_NOT_FOUND,
    PROVIDER_SECRET_NOT_FOUND,
    QUARANTINED,
    READY,
    SIDECAR_IMAGE_NOT_ALLOWED,
    SUSPENDED,
    format_time,
)
from ..api.enforcement import EnforcementAction
from ..api.governedagent import EnforcementStatus
from ..api.policy import GovernancePolicySpec
from ..api.rollout import Runtime
from ..builders import (
    BuildSettings,
    ChildNames,
    KeyState,
    build_api_key_secret,
    build_config_map,
    build_deployment,
    build_network_policy,
    build_service,
    build_sidecar_config,
    plan_api_key,
)
from ..builders.apikey import generate_api_key
from ..builders.gateway import gateway_config, gateway_url
from ..builders.meta import Manifest
from . import conditions as cond
from . import egress
from . import revisions as history
from .compare import needs_apply, progress_only_status, status_differs

WARNING = "Warning"
NORMAL = "Normal"


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


def plan_agent(
    observed: Observed,
    settings: BuildSettings,
    now: datetime,
    new_key: Callable[[], str] = generate_api_key,
) -> Plan:
    """The writes that bring the agent's children and status to the desired state."""
    agent = observed.agent
    problem = name_problem(agent.name)
    if problem is not None:
        return _plan_invalid_name(observed, problem, now)
    names = ChildNames.of(agent.name)
    plan = Plan()
    enforcement = enforcement_of(observed)
    if enforcement.release:
        plan.release = release_patch(enforcement)
        plan.events.append(
            Event(NORMAL, "Released", f"breach {enforcement.breach} acknowledged; restoring")
        )
    quarantined = enforcement.action == EnforcementAction.QUARANTINED
    key = plan_api_key(
        agent,
        observed.live.get("Secret"),
        now,
        revoke_for_breach=enforcement.breach if quarantined else None,
        new_key=new_key,
    )
    _add(plan, build_api_key_secret(agent, key), observed.live.get("Secret"))
    if key.event:
        plan.events.append(Event(NORMAL, *key.event))
    plan.next_key_expiry = key.previous_expires_at
    _plan_quarantine(plan, observed, settings, quarantined, names.network_policy)

    blocker = refused_sidecar_image(agent, settings) or missing_reference(observed)
    plan.blocker = blocker
    replicas = desired_replicas(agent, enforcement)
    running = None
    if observed.policy is not None and not _workload_blocked(blocker):
        running = history.choose_running(
            agent, observed.policy, observed.status, observed.revisions, now
        )
        plan.events += [Event(WARNING, reason, message) for reason, message in running.warnings]
        digest = _plan_workload(plan, observed, settings, replicas, running, quarantined)
        revision_status, plan.revisions = history.record(
            agent, running, observed.status, digest, now
        )
    else:
        plan.scale_to = _scale_down(observed.live.get("Deployment"), replicas)
        revision_status = history.carried(observed.status)

    rollout = cond.rollout_of(deployment_after(plan, observed))
    conditions = cond.desired_conditions(
        blocker or enforcement_blocker(agent, enforcement),
        rollout,
        external=agent.spec.runtime == Runtime.EXTERNAL,
    )
    rolled_back = history.degraded_by_rollback(running) if running else None
    if rolled_back is not None and conditions[DEGRADED].status != "True":
        conditions[DEGRADED] = rolled_back
    _warn_on_new_blocker(plan, observed, blocker)
    status = desired_status(observed, conditions, key, quarantined, now, rollout)
    status.update(revision_status)
    status["egress"] = egress.egress_status(agent, quarantined, observed.live)
    plan.events += [Event(WARNING, *w) for w in egress.warnings(status["egress"], observed.status)]
    if status_differs(status, observed.status):
        plan.status = status
    return plan


def _plan_invalid_name(observed: Observed, problem: str, now: datetime) -> Plan:
    """A name no child can carry: no child is attempted (each would be refused), the status
    says why, once (a retry cannot help: only a new agent with a valid name can)."""
    plan = Plan(blocker=cond.Blocker(INVALID_NAME, problem))
    agent = observed.agent
    values = cond.desired_conditions(plan.blocker, cond.rollout_of(None))
    status = {
        "observedGeneration": agent.generation,
        "conditions": cond.owned_conditions(
            observed.status.get("conditions") or [], values, format_time(now), agent.generation
        ),
        "governanceIdentity": agent.governance_identity,
    }
    _warn_on_new_blocker(plan, observed, plan.blocker)
    if status_differs(status, observed.status):
        plan.status = status
    return plan


def deployment_after(plan: Plan, observed: Observed) -> Mapping[str, Any] | None:
    """The Deployment the status describes: the live one or, when this plan creates it,
    the new object as the API server returns it (generation 1, no status yet).

    So the watch event of the creation finds the status already current, and reaching
    Ready costs one status write fewer.
    """
    live = observed.live.get("Deployment")
    if live is not None:
        return live
    created = next((m for m in plan.apply if m["kind"] == "Deployment"), None)
    if created is None:
        return None
    return {**created, "metadata": {**created["metadata"], "generation": 1}}


def _scale_down(live: Mapping[str, Any] | None, replicas: int | None) -> int | None:
    """0 when a live Deployment must stop although it cannot be rebuilt, else None.

    Deleting the policy or the provider Secret blocks the workload, and must not also
    dodge ``Suspend`` or ``spec.suspend``: the pods still go to zero (a ``Quarantine``'s
    NetworkPolicy is applied whatever blocks the workload).
    """
    if replicas != 0 or live is None:
        return None
    return 0 if (live.get("spec") or {}).get("replicas", 1) != 0 else None


def _workload_blocked(blocker: cond.Blocker | None) -> bool:
    """A refused sidecar image, a missing policy or provider Secret keep the pods from
    starting; a missing AlertSink does not."""
    return blocker is not None and blocker.reason != ALERT_SINK_NOT_FOUND


def _add(plan: Plan, desired: Manifest, live: Mapping[str, Any] | None) -> None:
    if needs_apply(desired, live):
        plan.apply.append(desired)


def _plan_quarantine(
    plan: Plan, observed: Observed, settings: BuildSettings, quarantined: bool, name: str
) -> None:
    live = observed.live.get("NetworkPolicy")
    if quarantined:
        locked = egress.gateway_in_force(observed.agent)
        _add(plan, build_network_policy(observed.agent, settings, with_gateway=locked), live)
        if live is None:
            message = "quarantined: traffic denied, model calls refused, API key revoked"
            plan.events.append(Event(WARNING, QUARANTINED, message))
    elif live is not None:
        plan.delete.append(("NetworkPolicy", name))


def _plan_workload(
    plan: Plan,
    observed: Observed,
    settings: BuildSettings,
    replicas: int | None,
    running: history.Running,
    quarantined: bool,
) -> str:
    """The ConfigMap, Deployment and Service of the running revision; the config hash.
    An External agent gets the ConfigMap only (a Deployment or Service left from
    runtime Pod is deleted)."""
    agent = running.agent
    config = build_sidecar_config(agent, running.policy_name, running.policy, settings, quarantined)
    lock = egress.gateway_in_force(agent)
    if lock:
        config = gateway_config(config)
    config_map, digest = build_config_map(agent, config, settings.ca_bundle)
    _add(plan, config_map, observed.live.get("ConfigMap"))
    apply, delete = egress.plan_egress(
        agent, settings, observed.live, running.policy.egress, config.provider.base_url,
        digest, replicas, quarantined,
    )  # fmt: skip
    plan.apply += apply
    plan.delete += delete
    if agent.spec.runtime == Runtime.EXTERNAL:
        names = ChildNames.of(agent.name)
        for kind, name in (("Deployment", names.deployment), ("Service", names.service)):
            if observed.live.get(kind) is not None:
                plan.delete.append((kind, name))
        return digest
    governance_url = gateway_url(agent) if lock else None
    deployment = build_deployment(agent, settings, digest, replicas, governance_url)
    _add(plan, deployment, observed.live.get("Deployment"))
    _add(plan, build_service(agent, sidecar=not lock), observed.live.get("Service"))
    return digest


def _warn_on_new_blocker(plan: Plan, observed: Observed, blocker: cond.Blocker | None) -> None:
    """One Warning Event per transition into a missing reference, not one per retry."""
    if blocker is None:
        return
    ready: Mapping[str, Any] = next(
        (c for c in observed.status.get("conditions") or [] if c.get("type") == READY), {}
    )
    if ready.get("reason") != blocker.reason or ready.get("message") != blocker.message:
        plan.events.append(Event(WARNING, blocker.reason, blocker.message))


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


def desired_status(
    observed: Observed,
    values: Mapping[str, cond.ConditionValue],
    key: KeyState,
    quarantined: bool,
    now: datetime,
    rollout: cond.Rollout | None = None,
) -> dict[str, Any]:
    """The operator-owned part of status (ingest-owned fields are left out entirely)."""
    agent = observed.agent
    names = ChildNames.of(agent.name)
    if rollout is None:
        rollout = cond.rollout_of(observed.live.get("Deployment"))
    children: dict[str, str] = {
        "secret": names.secret,
        "configMap": names.config_map,
        "deployment": names.deployment,
        "service": names.service,
    }
    if quarantined:
        children["networkPolicy"] = names.network_policy
    if agent.spec.runtime == Runtime.EXTERNAL:
        del children["deployment"], children["service"]
    api_key: dict[str, Any] = {"rotation": key.rotation}
    if key.previous_expires_at is not None:
        api_key["previousKeyExpiresAt"] = format_time(key.previous_expires_at)
    status: dict[str, Any] = {
        "observedGeneration": agent.generation,
        "conditions": cond.owned_conditions(
            observed.status.get("conditions") or [], values, format_time(now), agent.generation
        ),
        "children": children,
        "governanceIdentity": agent.governance_identity,
        "apiKey": api_key,
    }
    if rollout.exists:
        status["replicas"] = rollout.replicas
        status["readyReplicas"] = rollout.ready
    return status


def progress_only(plan: Plan, current: Mapping[str, Any]) -> bool:
    """Whether the plan's only write is status and it changes rollout progress only
    (:func:`.compare.progress_only_status`). Such a write may wait to coalesce with the
    next one; a transition (e.g. Ready becoming True) never does."""
    status = plan.status
    if status is None or plan.apply or plan.delete or plan.release is not None or plan.events:
        return False
    if plan.scale_to is not None:
        return False
    return plan.blocker is None and progress_only_status(status, current)
