"""Pure planning: from what was read (the agent, its references, its live children)
to what must be written (children to apply or delete, status, events).

Nothing here performs I/O, so every decision of the reconcile is unit-testable with
plain dicts and an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..api.agent import name_problem
from ..api.conditions import (
    ALERT_SINK_NOT_FOUND,
    DEGRADED,
    INVALID_NAME,
    QUARANTINED,
    READY,
    format_time,
)
from ..api.enforcement import EnforcementAction
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
from ..builders.revision import annotate_revision
from . import conditions as cond
from . import egress
from . import revisions as history
from .blockers import (
    desired_replicas,
    enforcement_blocker,
    enforcement_of,
    missing_reference,
    refused_sidecar_image,
    release_patch,
)
from .compare import first_status_starting, needs_apply, progress_only_status, status_differs
from .observed import NORMAL, WARNING, Event, Observed, Plan


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
        digest, annotated = _plan_workload(plan, observed, settings, replicas, running, quarantined)
        revision_status, plan.revisions = history.record(
            agent, running, observed.status, digest, now, _carriers(observed), annotated
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


def _carriers(observed: Observed) -> list[Mapping[str, Any]]:
    """The live children that may carry the running revision's content."""
    kinds = ("Deployment", "ConfigMap")
    return [child for kind in kinds if (child := observed.live.get(kind)) is not None]


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
) -> tuple[str, bool]:
    """The ConfigMap, Deployment and Service of the running revision; the config hash and
    whether a child carries the revision's content (its ControllerRevision waits).
    An External agent gets the ConfigMap only (a Deployment or Service left from
    runtime Pod is deleted)."""
    agent = running.agent
    config = build_sidecar_config(agent, running.policy_name, running.policy, settings, quarantined)
    lock = egress.gateway_in_force(agent)
    if lock:
        config = gateway_config(config)
    config_map, digest = build_config_map(agent, config, settings.ca_bundle)
    external = agent.spec.runtime == Runtime.EXTERNAL
    # The revision rides on the child every revision change rewrites: the Deployment
    # (its image or config hash), or for an External agent the ConfigMap.
    annotated = external and annotate_revision(config_map, running.digest, running.data)
    _add(plan, config_map, observed.live.get("ConfigMap"))
    apply, delete = egress.plan_egress(
        agent, settings, observed.live, running.policy.egress, config.provider.base_url,
        digest, replicas, quarantined,
    )  # fmt: skip
    plan.apply += apply
    plan.delete += delete
    if external:
        names = ChildNames.of(agent.name)
        for kind, name in (("Deployment", names.deployment), ("Service", names.service)):
            if observed.live.get(kind) is not None:
                plan.delete.append((kind, name))
        return digest, annotated
    governance_url = gateway_url(agent) if lock else None
    deployment = build_deployment(agent, settings, digest, replicas, governance_url)
    annotated = annotate_revision(deployment, running.digest, running.data)
    _add(plan, deployment, observed.live.get("Deployment"))
    _add(plan, build_service(agent, sidecar=not lock), observed.live.get("Service"))
    return digest, annotated


def _warn_on_new_blocker(plan: Plan, observed: Observed, blocker: cond.Blocker | None) -> None:
    """One Warning Event per transition into a missing reference, not one per retry."""
    if blocker is None:
        return
    ready: Mapping[str, Any] = next(
        (c for c in observed.status.get("conditions") or [] if c.get("type") == READY), {}
    )
    if ready.get("reason") != blocker.reason or ready.get("message") != blocker.message:
        plan.events.append(Event(WARNING, blocker.reason, blocker.message))


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
    (:func:`.compare.progress_only_status`, or a new agent's first status while its pods
    start). Such a write may wait to coalesce with the next one; a transition (e.g. Ready
    becoming True) never does."""
    status = plan.status
    if status is None or plan.apply or plan.delete or plan.release is not None or plan.events:
        return False
    if plan.scale_to is not None:
        return False
    starting = first_status_starting(status, current)
    return plan.blocker is None and (starting or progress_only_status(status, current))


def first_status_may_wait(plan: Plan, current: Mapping[str, Any]) -> bool:
    """A new agent's first reconcile creates its children and reports pods starting, with
    nothing missing: that status may wait (a moment) to be written together with Ready."""
    status = plan.status
    if status is None or plan.blocker is not None or plan.events or plan.release is not None:
        return False
    return any(m["kind"] == "Deployment" for m in plan.apply) and first_status_starting(
        status, current
    )
