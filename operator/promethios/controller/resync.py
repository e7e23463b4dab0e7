"""Periodic drift repair: every interval, reconcile every agent, spread with jitter.

The agents, their children and references come from the watch-fed cache (:mod:`.cache`)
when the operator runs under kopf, so a pass over agents in sync sends no request at all;
without a cache, one LIST per interval and GETs per agent. Each agent is taken at a random
offset inside the interval, so a thousand agents are not reconciled in the same second.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from ..kube import objects
from .cache import Unavailable
from .context import ReconcileContext
from .reconcile import read_agent, reconcile_agent

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
        if self.ctx.cache is not None:
            self.ctx.cache.pending()  # drop own writes the watches have long confirmed
        agents = self.agents()
        log.info("resync pass starting: %d agents", len(agents))
        random.shuffle(agents)
        pause = self.interval / (2 * max(len(agents), 1)) if spread else 0.0
        done = 0
        for body in agents:
            if self.stopping.wait(random.uniform(0, pause)):
                break
            try:
                # Cached: read at its turn, not at the start of the pass (it may have changed).
                current = body if "spec" in body else read_agent(self.ctx, **body["metadata"])
                if current is not None:
                    reconcile_agent(current, self.ctx)
                done += 1
            except Exception:
                meta = body.get("metadata") or {}
                log.exception("resync of %s/%s failed", meta.get("namespace"), meta.get("name"))
        log.info("resync pass: %d agents reconciled", done)
        return done

    def agents(self) -> list[dict[str, Any]]:
        """Every agent: names from the cache (read later, one by one), else one LIST."""
        cache = self.ctx.cache
        if cache is not None:
            try:
                names = cache.names("GovernedAgent")
            except Unavailable:
                names = None
            if names is not None:
                return [{"metadata": {"namespace": ns, "name": name}} for ns, name in names]
        return objects.list_governed_agents(self.ctx.client, self.namespaces)
