"""The one idempotent reconcile: read the world, plan, write only what differs.

``reconcile_agent`` is called when an agent is new to the operator or its spec changed,
after a reference or a child changes, on a schedule (retries, key expiry) and
periodically for drift. Calling it twice in a row writes nothing
the second time: children are applied only when they differ from the live objects,
status only when the operator's part of it changes, and Events only on transitions.

Under kopf the world is read from watch-fed caches (:mod:`.cache`: the agent, its
children; the handlers' indexes: its references), so a reconcile sends writes only;
without a cache (tests, tools) each read is a GET.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..api.agent import Agent, parse_agent
from ..api.conditions import (
    ALERT_SINK_NOT_FOUND,
    POLICY_NOT_FOUND,
    PROVIDER_SECRET_NOT_FOUND,
    format_time,
)
from ..api.enforcement import EnforcementAction
from ..api.policy import GovernancePolicySpec
from ..builders import ChildNames
from ..builders.revision import controller_revision_name
from ..kube import apply as kapply
from ..kube import objects
from ..kube.client import Client
from . import egress
from .blockers import stored_enforcement
from .cache import ObjectCache, Unavailable
from .compare import first_status_starting
from .context import PROGRESS, PROGRESS_DELAY, ReconcileContext
from .observed import Observed, Plan, References
from .plan import first_status_may_wait, plan_agent, progress_only
from .revisions import hashes_to_read

log = logging.getLogger(__name__)


#: Missing references: the reconcile is retried with a growing delay until they appear.
MISSING_REFERENCE_REASONS = frozenset(
    {POLICY_NOT_FOUND, PROVIDER_SECRET_NOT_FOUND, ALERT_SINK_NOT_FOUND}
)


CONFLICT_RETRIES = 3


class StaleRead(RuntimeError):
    """A write's resourceVersion precondition failed: the object changed since it was read."""


@dataclass(frozen=True)
class ApiReferences:
    """:class:`References` read from the API server (one GET each)."""

    client: Client

    def policy_spec(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        body = objects.get_policy(self.client, namespace, name)
        return None if body is None else body.get("spec") or {}

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        return objects.secret_keys(self.client, namespace, name)

    def alert_sink_exists(self, namespace: str, name: str) -> bool:
        return objects.alert_sink_exists(self.client, namespace, name)


#: Live children the caller already holds (e.g. the Deployment of a watch event).
Known = Mapping[str, Mapping[str, Any]]


def observe(
    client: Client,
    agent: Agent,
    status: Mapping[str, Any],
    references: References | None = None,
    known: Known | None = None,
    cache: ObjectCache | None = None,
) -> Observed:
    """Read the agent's references and live children: from ``known`` and the watch-fed
    ``cache`` (the newer copy), else with GETs."""
    ns, names = agent.namespace, ChildNames.of(agent.name)
    refs = references or ApiReferences(client)
    policy_spec = refs.policy_spec(ns, agent.spec.governance.policy_ref.name)
    policy = GovernancePolicySpec.model_validate(policy_spec) if policy_spec is not None else None
    ref = agent.spec.model_provider.credentials_secret_ref
    keys = refs.secret_keys(ns, ref.name) if ref is not None else None
    missing = tuple(
        sink.name for sink in agent.spec.alert_sinks if not refs.alert_sink_exists(ns, sink.name)
    )
    given = known or {}

    def live_child(kind: str, name: str) -> Mapping[str, Any] | None:
        child = given.get(kind)
        if child is not None and child.get("metadata", {}).get("name") != name:
            child = None
        if cache is not None:
            try:
                return newer(child, cache.get(kind, ns, name))
            except Unavailable:
                pass
        return child if child is not None else objects.get(client, kind, ns, name)

    live: dict[str, Mapping[str, Any] | None] = {
        "Secret": live_child("Secret", names.secret),
        "ConfigMap": live_child("ConfigMap", names.config_map),
        "Deployment": live_child("Deployment", names.deployment),
        "Service": live_child("Service", names.service),
    }
    if _may_have_network_policy(status):
        live["NetworkPolicy"] = live_child("NetworkPolicy", names.network_policy)
    live.update(egress.read_live(live_child, agent, status))
    return Observed(
        agent, policy, keys, missing, live, status, stored_revisions(client, agent, status, policy)
    )


def newer(
    known: Mapping[str, Any] | None, cached: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The later of two copies of one object (a watch event's and the cache's)."""
    if known is None or cached is None:
        return cached if known is None else known
    return cached if (objects.revision(cached) or 0) > (objects.revision(known) or 0) else known


def stored_revisions(
    client: Client, agent: Agent, status: Mapping[str, Any], policy: GovernancePolicySpec | None
) -> dict[str, Mapping[str, Any]]:
    """The ControllerRevisions a rollback may restore (none, unless one is in force or due)."""
    found: dict[str, Mapping[str, Any]] = {}
    for digest in hashes_to_read(agent, status, policy):
        name = controller_revision_name(agent.name, digest)
        revision = objects.get(client, "ControllerRevision", agent.namespace, name)
        if revision is not None and isinstance(revision.get("data"), Mapping):
            found[digest] = revision["data"]
    return found


def _may_have_network_policy(status: Mapping[str, Any]) -> bool:
    """Only a quarantine (now or just released) makes a NetworkPolicy; else skip the GET."""
    children = status.get("children") or {}
    quarantined = stored_enforcement(status).action == EnforcementAction.QUARANTINED
    return quarantined or bool(children.get("networkPolicy"))


def reconcile_agent(
    body: Mapping[str, Any],
    ctx: ReconcileContext,
    references: References | None = None,
    known: Known | None = None,
    defer_progress: bool = False,
) -> Plan:
    """Bring one GovernedAgent's children and status to the desired state; idempotent.

    ``references`` (default: GETs) answers what the agent refers to; ``known`` holds
    live children the caller has just seen (a child's watch event), so they are not
    read again. A retry after a stale read reads everything afresh.

    A missing reference schedules a retry with backoff (reset once nothing is missing).
    With ``defer_progress`` (a Deployment's rollout event), a status change that is pod
    counts only is not written now but at most :data:`PROGRESS_DELAY` later, so that it
    coalesces with the next change (typically Ready); transitions are written at once.
    A new agent's first status (children just created, pods starting) waits the same way,
    at most ``ctx.first_status_delay`` (so it is usually the Ready one: one write).
    """
    metadata = body["metadata"]
    if metadata.get("deletionTimestamp"):
        return Plan()  # owner references let the garbage collector remove the children
    with ctx.lock_for(metadata["namespace"], metadata["name"]):
        body = _freshest(ctx, body)
        for _ in range(CONFLICT_RETRIES):
            agent = parse_agent(body)
            refs = references or ctx.references
            status = body.get("status") or {}
            observed = observe(ctx.client, agent, status, refs, known, ctx.cache)
            if (rv := objects.revision(observed.live.get("Deployment"))) is not None:
                ctx.deployment_rv[(agent.namespace, agent.name)] = rv
            plan = plan_agent(observed, ctx.settings, ctx.clock(), ctx.new_key)
            deferred = defer_progress and progress_only(plan, observed.status)
            if deferred or first_status_may_wait(plan, observed.status):
                first = plan.status is not None and first_status_starting(
                    plan.status, observed.status
                )
                plan.status = None
                delay = ctx.first_status_delay if first else PROGRESS_DELAY
                when = ctx.clock() + timedelta(seconds=delay)
                ctx.reconcile_at(
                    agent.uid, agent.namespace, agent.name, when, PROGRESS, keep_earlier=True
                )
            _skip_unrecorded_revisions(ctx, agent, plan)
            try:
                execute(ctx, body, agent, plan)
            except StaleRead:
                # The ingest API wrote status after our read (it also releases on
                # acknowledgement): plan again from the object as it is now.
                fresh = objects.get_governed_agent(ctx.client, agent.namespace, agent.name)
                if fresh is None:
                    return Plan()
                body, known = fresh, None
                continue
            if plan.status is not None:
                ctx.cancel(agent.uid, PROGRESS)  # the status written is current
            if plan.next_key_expiry is not None:
                ctx.reconcile_at(agent.uid, agent.namespace, agent.name, plan.next_key_expiry)
            if plan.blocker is not None and plan.blocker.reason in MISSING_REFERENCE_REASONS:
                ctx.retry_later(agent.uid, agent.namespace, agent.name)
            else:
                ctx.succeeded(agent.uid)
            return plan
        raise StaleRead(f"{metadata['name']}: status kept changing; retrying later")


def _skip_unrecorded_revisions(ctx: ReconcileContext, agent: Agent, plan: Plan) -> None:
    """Keep track of ControllerRevisions written while the status recording them waits
    (a deferred first status): the next reconcile plans them again, but need not write them."""
    key = (agent.namespace, agent.name)
    written = ctx.unrecorded_revisions.pop(key, set())
    plan.revisions.apply = [m for m in plan.revisions.apply if m["metadata"]["name"] not in written]
    if plan.status is not None:
        return  # this status write records them
    written |= {m["metadata"]["name"] for m in plan.revisions.apply}
    if written:
        ctx.unrecorded_revisions[key] = written


def execute(ctx: ReconcileContext, body: Mapping[str, Any], agent: Agent, plan: Plan) -> None:
    """Perform the plan's writes: a superseded revision's ControllerRevision first (its
    content is on the ConfigMap about to be rewritten), children, then status, Events."""
    client, ns = ctx.client, agent.namespace
    cache = ctx.cache
    for manifest in plan.revisions.apply:
        kapply.apply(client, manifest)
        log.info("revision %s of %s/%s", manifest["revision"], ns, agent.name)
    for manifest in plan.apply:
        written = kapply.apply(client, manifest)
        if cache is not None:
            cache.wrote(manifest["kind"], written)
        log.info("applied %s %s/%s", manifest["kind"], ns, manifest["metadata"]["name"])
    for kind, name in plan.delete:
        kapply.delete(client, kind, ns, name)
        if cache is not None:
            cache.deleted(kind, ns, name)
        log.info("deleted %s %s/%s", kind, ns, name)
    for name in plan.revisions.delete:
        kapply.delete(client, "ControllerRevision", ns, name)
    if plan.scale_to is not None:
        name = ChildNames.of(agent.name).deployment
        scaled = kapply.scale(client, "Deployment", ns, name, plan.scale_to)
        if cache is not None:
            cache.wrote("Deployment", scaled)
        log.info("scaled Deployment %s/%s to %d", ns, name, plan.scale_to)
    if plan.release is not None:
        # A merge patch with a resourceVersion precondition: a breach recorded by the
        # ingest API after our read makes this fail (409) instead of being overwritten.
        patch = {
            **plan.release,
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
        }
        try:
            released = kapply.merge_patch(
                client, "GovernedAgent", ns, agent.name, patch, subresource="status"
            )
        except kapply.ApiException as error:
            if error.status == 409:
                raise StaleRead(str(error.reason)) from error
            raise
        if cache is not None:
            cache.wrote("GovernedAgent", released)
    if plan.status is not None:
        log.info("status %s/%s: %s", ns, agent.name, _summary(plan.status))
        try:
            stored = kapply.apply_status(client, ns, agent.name, plan.status)
        except kapply.ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise
        else:
            if cache is not None:
                cache.wrote("GovernedAgent", stored)
    now = format_time(ctx.clock())
    for event in plan.events:
        _post_event(ctx, body, event.type, event.reason, event.message, now)


def _summary(status: Mapping[str, Any]) -> str:
    """The operator's conditions in one line (reason: message), for the log."""
    return "; ".join(
        f"{c['type']}={c['status']} {c['reason']}: {c['message']}"
        for c in status.get("conditions") or []
    )


def _post_event(
    ctx: ReconcileContext, body: Mapping[str, Any], type_: str, reason: str, message: str, now: str
) -> None:
    """Events are best-effort: a failure to post one must not fail the reconcile."""
    try:
        kapply.post_event(ctx.client, body, type_, reason, message, now)
    except Exception as error:
        if kapply.namespace_terminating(error):
            log.info("event %s on %s not posted: its namespace is being deleted", reason,
                     body["metadata"]["name"])  # fmt: skip
            return
        log.warning(
            "could not post event %s on %s", reason, body["metadata"]["name"], exc_info=True
        )


def reconcile_named(
    ctx: ReconcileContext,
    namespace: str,
    name: str,
    references: References | None = None,
    known: Known | None = None,
    defer_progress: bool = False,
) -> Plan | None:
    """Read a GovernedAgent afresh and reconcile it; None when it no longer exists.

    The read (from the cache, which holds this operator's own writes too) is made under
    the agent's lock: after a reconcile in progress, not before.
    A ``known`` Deployment older than one already read is dropped (events lag reads).
    """
    with ctx.lock_for(namespace, name):
        seen = objects.revision((known or {}).get("Deployment"))
        if seen is not None and seen < ctx.deployment_rv.get((namespace, name), seen):
            known = None
        body = read_agent(ctx, namespace, name)
        if body is None:
            return None
        return reconcile_agent(body, ctx, references, known, defer_progress)


def _freshest(ctx: ReconcileContext, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The agent as given or, when newer, as cached (e.g. with the status written here)."""
    if ctx.cache is None:
        return body
    metadata = body["metadata"]
    try:
        cached = ctx.cache.get("GovernedAgent", metadata["namespace"], metadata["name"])
    except Unavailable:
        return body
    return newer(body, cached) or body


def read_agent(ctx: ReconcileContext, namespace: str, name: str) -> dict[str, Any] | None:
    """A GovernedAgent as last seen by the watch or written here; a GET without a cache."""
    if ctx.cache is not None:
        try:
            return ctx.cache.get("GovernedAgent", namespace, name)
        except Unavailable:
            pass
    return objects.get_governed_agent(ctx.client, namespace, name)
