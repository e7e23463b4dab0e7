"""The watch-fed cache the pages render from: agents, policies and AlertSinks.

One list-then-watch thread per kind and namespace scope (:func:`promethios.kube.watch.
watch_forever`) hands each event to the event loop, which parses it once into a row
(:mod:`.model`). A page request never lists anything: it reads these dictionaries.

Trust trend: each agent's stored trust score is sampled whenever a watch event shows it
changed (bounded, :data:`TREND_POINTS`). It is this process's memory, so it starts empty
when the dashboard starts; everything else on the pages is read from stored status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..kube.client import Client
from ..kube.watch import watch_forever
from .model import AgentRow, PolicyRow, SinkRow, agent_row, policy_row, sink_row
from .views import sparkline

log = logging.getLogger(__name__)

AGENT, POLICY, SINK = "GovernedAgent", "GovernancePolicy", "AlertSink"
KINDS = (AGENT, POLICY, SINK)
TREND_POINTS = 48


def _key(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


class FleetCache:
    """Rows by ``namespace/name`` for each kind, updated by :meth:`apply` (on the loop)."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentRow] = {}
        self.policies: dict[str, PolicyRow] = {}
        self.sinks: dict[str, SinkRow] = {}
        self.trends: dict[str, deque[float]] = {}
        self.sparklines: dict[str, str] = {}
        """Each trend drawn once when it changes (the fleet page only reads them)."""
        self.synced: set[tuple[str, str | None]] = set()
        self.expected: set[tuple[str, str | None]] = set()

    @property
    def ready(self) -> bool:
        """Every expected watch has listed once."""
        return self.expected <= self.synced

    def apply(self, kind: str, scope: str | None, event_type: str, obj: dict[str, Any]) -> None:
        """Take in one watch event (``SYNC`` carries ``{"items": [...]}``)."""
        table, parse = self._table(kind)
        if event_type == "SYNC":
            fresh = {}
            for item in obj.get("items") or []:
                with contextlib.suppress(Exception):
                    fresh[_key(item)] = parse(item)
            for key in [k for k in table if scope is None or k.startswith(scope + "/")]:
                if key not in fresh:
                    self._drop(kind, key)
            for key, row in fresh.items():
                self._put(kind, key, row)
            self.synced.add((kind, scope))
        elif event_type == "DELETED":
            self._drop(kind, _key(obj))
        else:
            try:
                row = parse(obj)
            except Exception:  # a malformed object must not stop the feed
                log.warning("%s %s does not parse; not shown", kind, _key(obj))
                return
            self._put(kind, _key(obj), row)

    def _table(self, kind: str) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Any]]:
        if kind == AGENT:
            return self.agents, agent_row
        if kind == POLICY:
            return self.policies, policy_row
        return self.sinks, sink_row

    def _put(self, kind: str, key: str, row: Any) -> None:
        table, _ = self._table(kind)
        table[key] = row
        if isinstance(row, AgentRow) and row.trust is not None:
            trend = self.trends.setdefault(key, deque(maxlen=TREND_POINTS))
            if not trend or trend[-1] != row.trust:
                trend.append(row.trust)
                self.sparklines[key] = sparkline(trend)

    def _drop(self, kind: str, key: str) -> None:
        table, _ = self._table(kind)
        table.pop(key, None)
        if kind == AGENT:
            self.trends.pop(key, None)
            self.sparklines.pop(key, None)

    def namespaces(self) -> set[str]:
        """Every namespace holding an agent, a policy or a sink."""
        tables: list[Mapping[str, Any]] = [self.agents, self.policies, self.sinks]
        return {key.partition("/")[0] for table in tables for key in table}


class CacheFeed:
    """Watch threads feeding a :class:`FleetCache` on the running loop."""

    def __init__(
        self,
        cache: FleetCache,
        api: Client,
        namespaces: tuple[str, ...],
        resync_seconds: float = 300.0,
    ) -> None:
        self._cache = cache
        self._api = api
        self._scopes: list[str | None] = list(namespaces) or [None]
        self._resync = resync_seconds
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """One thread per kind per scope."""
        for scope in self._scopes:
            for kind in KINDS:
                self._cache.expected.add((kind, scope))
                thread = threading.Thread(
                    target=watch_forever,
                    args=(
                        self._api,
                        kind,
                        scope,
                        self._handoff(kind, scope),
                        self._stop,
                        "",
                        self._resync,
                    ),
                    name=f"dashboard-watch-{kind}-{scope or 'all'}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _handoff(self, kind: str, scope: str | None) -> Callable[[str, dict[str, Any]], None]:
        def callback(event_type: str, obj: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._cache.apply, kind, scope, event_type, obj)

        return callback

    def stop(self) -> None:
        """Ask the threads to finish (they notice within seconds)."""
        self._stop.set()
