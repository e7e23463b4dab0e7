"""GovernedAgent events: decided on kopf's event loop, carried out on the operator's workers.

Why not a plain synchronous kopf handler: kopf runs those in its thread pool, and while
its threads are busy every other agent's event waits inside kopf with its worker task,
its body and its handler arguments. With 10,000 agents created within a minute that
backlog was most of the operator's peak memory. So kopf's handler now only decides what
an event means (:meth:`AgentEvents.decide`, pure and quick) and queues the agent's key
(:class:`AgentWork`, a few hundred bytes); kopf is done with the event at once.

The workers (:class:`~.workpool.KeyedWorkers`) run one agent at a time and its items in
order. A reconcile reads the agent from the cache when it runs, so a waiting reconcile is
superseded by a newer one of the same agent: several events, one reconcile of the latest
state. A deletion is never superseded, and nothing overtakes it (a re-created agent of
the same name is reconciled after the old one is forgotten). The workers wait until the
cache answers (kopf's indexes and every informer's listing), so the reconciles of a
start-up read nothing from the API server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..api.agent import InvalidSpec
from ..api.enforcement import EnforcementAction
from ..kube import apply as kapply
from .context import ReconcileContext
from .reconcile import reconcile_named
from .triggers import critical_count, enforcement_key, needs_reconcile
from .workpool import KeyedWorkers

log = logging.getLogger(__name__)

#: Threads reconciling agents (kopf's thread pool had 8 for them).
WORKERS = 8


@dataclass(frozen=True)
class AgentWork:
    """One agent to reconcile (or, ``deleted``, to forget)."""

    uid: str
    namespace: str
    name: str
    deleted: bool = False
    #: From the start-up listing: logged when it finds the agent in sync.
    initial: bool = False


def supersedes(old: AgentWork, new: AgentWork) -> bool:
    """A waiting reconcile is replaced by a newer one; a deletion never is."""
    return not old.deleted and not new.deleted


@dataclass
class AgentEvents:
    """What each agent event means, given the events seen before it (kopf's order)."""

    #: The enforcement last seen per agent uid (a new one calls for a reconcile).
    enforcement: dict[str, tuple[EnforcementAction, int]] = field(default_factory=dict)
    #: The critical violations last seen per uid, when ``rollbackOnBreach`` watches them.
    critical: dict[str, int | None] = field(default_factory=dict)

    def decide(self, event_type: str | None, body: Any) -> AgentWork | None:
        """The work an event calls for; None for the many that call for none (heartbeats,
        the operator's own status writes)."""
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        key = dict(uid=uid, namespace=metadata.get("namespace") or "", name=metadata["name"])
        if event_type == "DELETED":
            self.enforcement.pop(uid, None)
            self.critical.pop(uid, None)
            return AgentWork(**key, deleted=True)
        previous = self.enforcement.get(uid)
        self.enforcement[uid] = enforcement_key(body.get("status") or {})
        before, self.critical[uid] = self.critical.get(uid), critical_count(body)
        more_critical = before is not None and (self.critical[uid] or 0) > before
        if needs_reconcile(event_type, body, previous) or more_critical:
            return AgentWork(**key, initial=event_type is None)
        return None


def carry_out(ctx: ReconcileContext, work: AgentWork) -> None:
    """Reconcile the agent as cached now (or forget it); a failure is retried later with
    growing delay, an invalid spec only logged (a new spec is a new event)."""
    where = f"{work.namespace}/{work.name}"
    if work.deleted:
        ctx.forget(work.uid, work.namespace, work.name)
        return
    try:
        plan = reconcile_named(ctx, work.namespace, work.name, ctx.references)
    except InvalidSpec as error:
        log.error("%s: invalid spec: %s", where, error)
        return
    except Exception as error:
        if kapply.namespace_terminating(error):
            log.info("%s not reconciled: its namespace is being deleted", where)
            return
        log.warning("reconcile of %s failed", where, exc_info=True)
        ctx.retry_later(work.uid, work.namespace, work.name)
        return
    if work.initial and plan is not None and plan.writes_nothing:
        # Once per agent per start: what an operator restart found (and left alone).
        log.info("%s: in sync at start-up; nothing written", where)


class AgentQueue:
    """The decisions (on kopf's loop) and the workers carrying them out."""

    def __init__(self, ctx: ReconcileContext, workers: int = WORKERS) -> None:
        self.ctx, self.events, self._count = ctx, AgentEvents(), workers
        self._pool: KeyedWorkers[AgentWork] | None = None

    def start(self, gate: threading.Event) -> None:
        """Start the workers; they take work once ``gate`` is set (the cache answers)."""
        self._pool = KeyedWorkers(
            lambda work: carry_out(self.ctx, work),
            self._count,
            gate,
            supersedes=supersedes,
            name="promethios-agent",
        )
        self._pool.start()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()

    def on_event(self, event_type: str | None, body: Any) -> AgentWork | None:
        """Decide and queue (kopf's handler calls this on its loop; it never blocks)."""
        work = self.events.decide(event_type, body)
        if work is not None and work.deleted and self.ctx.cache is not None:
            # The watch has dropped it, but an own status write of the last minute would
            # still answer: the reconciles its children's deletions start must find it gone
            # (or they would apply children for an agent that no longer exists).
            self.ctx.cache.deleted("GovernedAgent", work.namespace, work.name)
        if work is not None:
            if self._pool is None:
                raise RuntimeError("the agent workers are not started")
            self._pool.submit((work.namespace, work.name), work)
        return work

    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return self._pool is None or self._pool.idle()
