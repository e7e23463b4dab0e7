"""Periodic drift repair: every interval, reconcile every agent, spread with jitter.

One LIST per interval, then each agent at a random offset inside the interval, so
a thousand agents do not hit the API server in the same second. A reconcile of an
agent whose children match writes nothing, so the resync costs reads only.
"""

from __future__ import annotations

import logging
import random
import threading

from ..kube import objects
from .context import ReconcileContext
from .reconcile import reconcile_agent

log = logging.getLogger(__name__)


class Resync(threading.Thread):
    """A daemon thread reconciling every agent once per ``interval`` seconds."""

    def __init__(
        self, ctx: ReconcileContext, interval: float, namespaces: tuple[str, ...] = ()
    ) -> None:
        super().__init__(name="promethios-resync", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self.namespaces = namespaces
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Ask the thread to finish; it exits within one agent's reconcile."""
        self.stopping.set()

    def run(self) -> None:
        # The first pass waits a full interval: on startup the initial listing of agents
        # (the event handler's first event per agent) has just reconciled every one.
        while not self.stopping.wait(self.interval * random.uniform(0.5, 1.0)):
            try:
                self.pass_once()
            except Exception:
                log.exception("resync pass failed")

    def pass_once(self, spread: bool = True) -> int:
        """Reconcile every agent once, with a random pause between them (none unless
        ``spread``: e.g. a new CA bundle every ConfigMap must carry); the count done."""
        agents = objects.list_governed_agents(self.ctx.client, self.namespaces)
        random.shuffle(agents)
        pause = self.interval / (2 * max(len(agents), 1)) if spread else 0.0
        done = 0
        for body in agents:
            if self.stopping.wait(random.uniform(0, pause)):
                break
            try:
                reconcile_agent(body, self.ctx)
                done += 1
            except Exception:
                meta = body.get("metadata") or {}
                log.exception("resync of %s/%s failed", meta.get("namespace"), meta.get("name"))
        return done
