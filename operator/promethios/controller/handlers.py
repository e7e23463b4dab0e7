"""Thin kopf handlers: each one finds the affected agents and calls the one reconcile.

The blocking Kubernetes client never runs on kopf's event loop: the reference handlers
are synchronous (kopf runs them in its thread pool), and the agents' handler only queues
the agent for the operator's own workers (:mod:`.agentwork`), so that no event waits
inside kopf. All of them share one
:class:`~promethios.controller.context.ReconcileContext` (one connection pool).

How dependents recover by themselves: an index maps each referenced object
(GovernancePolicy, provider Secret, AlertSink) to the agents that reference it; a
watch on those kinds reconciles the dependents as soon as a reference appears or
changes. Child Deployments report rollouts the same way. Periodic drift repair
is :mod:`promethios.controller.resync`, not a kopf timer (kopf timers put a
finalizer on every agent, and deletions would then need a running operator).

Fewer reads: two more indexes (policy specs, AlertSink names) and the Secret informer's
store of data keys are watch-fed caches of the references, so a reconcile started by a
handler does not GET them; an object missing from a cache is still confirmed with a GET
(:class:`IndexedReferences`). The agents and their children are read from watch-fed
caches too (:mod:`.cachefeed`): a reconcile sends writes only, and a resync of agents in
sync sends nothing.

kopf watches the agents, policies and AlertSinks only; the children and all Secrets are
watched by the operator's own informers (:mod:`.informers`, started and stopped here with
kopf), whose events :func:`handle_child` carries out.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf

from ..api.common import GROUP, VERSION
from ..api.conditions import format_time
from ..api.metadata import LABEL_MANAGED_BY, MANAGED_BY, PREFIX
from ..kube import apply as kapply
from . import cachefeed, policystatus
from .agentwork import AgentQueue
from .context import KeyIndex, ReconcileContext
from .informers import Informers, Work
from .losses import REASON, undelivered_report
from .reconcile import ApiReferences, Known, read_agent, reconcile_named
from .triggers import (
    IndexKey,
    ObjectKey,
    policy_spec_changed,
    references_of,
)

log = logging.getLogger(__name__)

AGENTS = (GROUP, VERSION, "governedagents")
MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}
INDEX = "agents_by_reference"
POLICY_SPECS = "policy_specs"
#: The Secrets' data keys (the Secret informer's store; handler kwargs in tests).
SECRET_KEYS = "secret_keys"
ALERT_SINKS = "alert_sinks"

V = TypeVar("V")


def register(
    ctx: ReconcileContext, registry: kopf.OperatorRegistry, namespaces: tuple[str, ...] = ()
) -> None:
    """Register every handler on ``registry``, closing over the shared context; the
    informers watch ``namespaces`` (all when empty), as kopf does."""
    _register_settings(registry)
    _register_reference_indexes(registry)
    cachefeed.register(registry)
    agents = AgentQueue(ctx)
    _register_informers(ctx, registry, namespaces, agents)
    _register_agent_handlers(ctx, registry, agents)
    _register_reference_handlers(ctx, registry)
    policystatus.register(ctx, registry)


def _register_settings(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(registry=registry, id="configure")
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The agents have only event handlers, so kopf stores nothing on them; should a
        # change handler ever be added, its bookkeeping goes to annotations, never status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{PREFIX}/finalizer"
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = 8
        settings.watching.server_timeout = 300


def _register_informers(
    ctx: ReconcileContext,
    registry: kopf.OperatorRegistry,
    namespaces: tuple[str, ...],
    agents: AgentQueue,
) -> None:
    started: list[Informers] = []

    @kopf.on.startup(registry=registry, id="object-cache")
    def install_cache(**kwargs: Any) -> None:
        # kopf passes every index to startup handlers too; they fill before any handler
        # runs. The informers' work and the agents' wait for the cache: kopf's indexes
        # and every listing.
        indexes = {key: kwargs[key] for key in (INDEX, POLICY_SPECS, ALERT_SINKS)}
        informers = Informers(ctx.client, namespaces, lambda work: handle_child(ctx, indexes, work))
        ctx.secret_keys = informers.stores["Secret"]
        ctx.cache = cache = cachefeed.cache_from(kwargs, informers)
        ctx.references = IndexedReferences.of(ctx, kwargs)
        started.append(informers)
        informers.start(on_synced=lambda: cache.mark_ready(cachefeed.INFORMERS))
        agents.start(gate=cache.ready)

    @kopf.on.cleanup(registry=registry, id="stop-informers")
    def stop_informers(**_: Any) -> None:
        agents.stop()
        while started:
            started.pop().stop()


def _indexes_filled(ctx: ReconcileContext) -> None:
    """A handler runs: kopf has filled every index from its initial listing, so the cache
    may answer once the informers have listed too (until then, reads are GETs)."""
    if ctx.cache is not None and not ctx.cache.ready.is_set():
        ctx.cache.mark_ready(cachefeed.KOPF)


@dataclass(frozen=True)
class Seen:
    """The parts of a kopf watch event the handlers use."""

    type: str | None
    namespace: str
    name: str
    labels: Mapping[str, str]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Seen:
        """From a handler's keyword arguments (``type`` is None for the initial listing)."""
        return cls(
            type=kwargs.get("type"),
            namespace=kwargs.get("namespace") or "",
            name=kwargs.get("name") or "",
            labels=kwargs.get("labels") or {},
        )


@dataclass(frozen=True)
class IndexedReferences:
    """References answered from kopf's watch-fed indexes; a miss is confirmed by a GET.

    A present object is taken from the cache (its watch event updates the index before
    the handlers that reconcile its dependents run); an absent one is asked of the API
    server, so a reference created a moment ago is never reported missing by mistake.
    """

    policies: kopf.Index[ObjectKey, dict[str, Any]]
    secrets: KeyIndex
    sinks: kopf.Index[ObjectKey, bool]
    api: ApiReferences

    @classmethod
    def of(cls, ctx: ReconcileContext, kwargs: Mapping[str, Any]) -> IndexedReferences:
        """From a handler's keyword arguments (kopf passes every index to every handler);
        the Secrets' data keys from the Secret informer (``ctx.secret_keys``)."""
        secrets = kwargs.get(SECRET_KEYS, ctx.secret_keys)
        return cls(
            kwargs[POLICY_SPECS],
            secrets if secrets is not None else {},
            kwargs[ALERT_SINKS],
            ApiReferences(ctx.client),
        )

    @staticmethod
    def _cached(index: KeyIndex | kopf.Index[ObjectKey, V], namespace: str, name: str) -> V | None:
        try:
            return next(iter(index.get((namespace, name), ())), None)
        except RuntimeError:  # changed by the event loop while read here: ask the API
            return None

    def policy_spec(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        cached = self._cached(self.policies, namespace, name)
        return cached if cached is not None else self.api.policy_spec(namespace, name)

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        cached = self._cached(self.secrets, namespace, name)
        return cached if cached is not None else self.api.secret_keys(namespace, name)

    def alert_sink_exists(self, namespace: str, name: str) -> bool:
        cached = self._cached(self.sinks, namespace, name)
        return bool(cached) or self.api.alert_sink_exists(namespace, name)


def _register_reference_indexes(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(GROUP, VERSION, "governancepolicies", registry=registry, id=POLICY_SPECS)
    def policy_specs(*, spec: kopf.Spec, **kwargs: Any) -> dict[ObjectKey, dict[str, Any]]:
        seen = Seen.of(kwargs)
        return {(seen.namespace, seen.name): copy.deepcopy(dict(spec))}

    @kopf.index(GROUP, VERSION, "alertsinks", registry=registry, id=ALERT_SINKS)
    def alert_sinks(**kwargs: Any) -> dict[ObjectKey, bool]:
        seen = Seen.of(kwargs)
        return {(seen.namespace, seen.name): True}


def _register_agent_handlers(
    ctx: ReconcileContext, registry: kopf.OperatorRegistry, queue: AgentQueue
) -> None:
    # A low-level event handler, not on.create/update/resume: kopf then stores nothing on
    # the agent (no diffbase or progress annotations), which saves a write per change.
    # Async and quick: it only queues the agent for the workers (:mod:`.agentwork`).
    @kopf.on.event(*AGENTS, registry=registry, id="reconcile")
    async def agent_event(*, body: kopf.Body, **kwargs: Any) -> None:
        _indexes_filled(ctx)
        queue.on_event(kwargs.get("type"), body)

    # Async too: a sync index would wait for kopf's thread pool at every agent event.
    @kopf.index(*AGENTS, registry=registry, id=INDEX)
    async def agents_by_reference(*, spec: kopf.Spec, **kwargs: Any) -> dict[IndexKey, str]:
        seen = Seen.of(kwargs)
        return {key: seen.name for key in references_of(seen.namespace, spec)}


def _reconcile_dependents(
    ctx: ReconcileContext,
    names: Iterable[str],
    namespace: str,
    kwargs: Mapping[str, Any],
    known: Known | None = None,
    defer_progress: bool = False,
) -> None:
    _indexes_filled(ctx)
    references = IndexedReferences.of(ctx, kwargs)
    for name in sorted(set(names)):
        try:
            reconcile_named(ctx, namespace, name, references, known, defer_progress)
        except Exception as error:
            if not kapply.namespace_terminating(error):
                log.exception("reconcile of %s/%s failed", namespace, name)
                continue
            log.info("%s/%s not reconciled: its namespace is being deleted", namespace, name)


def dependents(kwargs: Mapping[str, Any], kind: str, seen: Seen) -> list[str]:
    """Agents whose spec refers to the object of this event (from the kopf index)."""
    index: kopf.Index[IndexKey, str] = kwargs[INDEX]
    return list(index.get((kind, seen.namespace, seen.name), []))


def _register_reference_handlers(ctx: ReconcileContext, registry: kopf.OperatorRegistry) -> None:
    generations: dict[ObjectKey, Any] = {}

    @kopf.on.event(GROUP, VERSION, "governancepolicies", registry=registry, id="policy")
    def policy_event(*, body: kopf.Body, **kwargs: Any) -> None:
        seen = Seen.of(kwargs)
        key = (seen.namespace, seen.name)
        if policy_spec_changed(generations, seen.type, key, body.metadata.get("generation")):
            _reconcile_dependents(
                ctx, dependents(kwargs, "GovernancePolicy", seen), seen.namespace, kwargs
            )

    @kopf.on.event(GROUP, VERSION, "alertsinks", registry=registry, id="alert-sink")
    def alert_sink_event(**kwargs: Any) -> None:
        seen = Seen.of(kwargs)
        if seen.type in ("ADDED", "DELETED"):  # only existence matters to the operator
            _reconcile_dependents(
                ctx, dependents(kwargs, "AlertSink", seen), seen.namespace, kwargs
            )


def _report_undelivered(ctx: ReconcileContext, pod: Mapping[str, Any]) -> None:
    """A stopped pod's sidecar could not deliver everything: say so on its agent, once."""
    report = undelivered_report(pod)
    if report is None:
        return
    agent = read_agent(ctx, report.namespace, report.agent)
    if agent is None:
        return
    now = format_time(ctx.clock())
    if kapply.post_event(
        ctx.client, agent, "Warning", REASON, report.message, now, name=report.event_name
    ):
        log.warning("%s/%s: %s", report.namespace, report.agent, report.message)


def handle_child(ctx: ReconcileContext, indexes: Mapping[str, Any], work: Work) -> None:
    """Carry out what an informer's event means (:func:`.childevents.decide`), on a worker;
    ``indexes`` are kopf's (the reference indexes and the agents by reference)."""
    event, dispatch = work.event, work.dispatch
    if dispatch.report_pod and work.body is not None:
        try:
            _report_undelivered(ctx, work.body)
        except Exception:
            log.warning("could not report a stopped pod's losses", exc_info=True)
    seen = Seen(event.type, event.namespace, event.name, event.labels)
    names = list(dispatch.reconcile)
    if dispatch.referencing:
        names += dependents(indexes, event.kind, seen)
    if not names:
        return
    # The event carries the live Deployment: no need to read it again (unless gone).
    known = {"Deployment": work.body} if dispatch.known_deployment and work.body else None
    _reconcile_dependents(
        ctx, names, event.namespace, indexes, known, defer_progress=dispatch.defer_progress
    )
