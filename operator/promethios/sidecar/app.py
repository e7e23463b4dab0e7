"""Wiring: the agent-facing app, the metrics app and the background loops.

:class:`Sidecar` owns one :class:`~.state.SidecarState`, four HTTP client
sessions (model provider; ingest API for violations; ingest API for heartbeats
and metrics; ingest API for budget allowances: an ingest outage never starves
model calls, reports never hold up a violation, and a lease renewal never waits
behind either), two listeners and five background tasks (config poll, heartbeat,
metrics, violation delivery, allowance). The agent-facing listener binds
``listen_host`` (localhost); the metrics listener binds all interfaces because
Prometheus and the kubelet's probes reach it from outside the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from promethios.api.wire import PATH_HEARTBEAT, PATH_METRICS, PATH_VIOLATIONS

from .allowance import Allowance
from .config import ConfigStore, Snapshot
from .delivery import Delivery
from .ingestclient import IngestClient
from .proxy import ModelProxy
from .reporting import ReportingApi
from .state import SidecarState
from .termination import summarize, write_summary

log = logging.getLogger(__name__)


def new_upstream_session() -> aiohttp.ClientSession:
    """The session model calls go to the provider through (pooled, kept-alive)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))


CONFIG_POLL_SECONDS = 3.0
#: On SIGTERM, how long closing the budget leases may take (after the spool drained).
LEASE_CLOSE_SECONDS = 3.0


class Sidecar:
    """One running sidecar; ``start()`` binds and starts the loops, ``stop()`` undoes it."""

    def __init__(
        self,
        config_path: str | Path,
        poll_seconds: float = CONFIG_POLL_SECONDS,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        loops: bool = True,
    ) -> None:
        self.store = ConfigStore(config_path, on_change=self._on_change)
        self.state = SidecarState(self.store)
        self.poll_seconds = poll_seconds
        self.backoff = (backoff_base, backoff_cap)
        self.loops = loops
        self.agent_port = 0
        self.metrics_port = 0
        self.tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._sessions: list[aiohttp.ClientSession] = []
        self._clients: list[IngestClient] = []
        self.delivery: Delivery | None = None
        self.allowance: Allowance | None = None
        self.proxy: ModelProxy | None = None
        self._oneshots: set[asyncio.Task[None]] = set()

    def _on_change(self, old: Snapshot, new: Snapshot) -> None:
        # The store is created before the state; the first reload can only come later.
        if hasattr(self, "state"):
            self.state.apply_snapshot(old, new)
        if new.config.quarantined and not old.config.quarantined and self.proxy is not None:
            # A NetworkPolicy stops new connections only: drop the ones kept alive too.
            self._spawn_once(self._renew_upstream)

    @property
    def upstream_session(self) -> aiohttp.ClientSession | None:
        """The provider session model calls go through (replaced on quarantine)."""
        return self.proxy.session if self.proxy is not None else None

    async def _renew_upstream(self) -> None:
        assert self.proxy is not None
        old = self.proxy.session
        self.proxy.session = new_upstream_session()
        self._sessions = [s for s in self._sessions if s is not old] + [self.proxy.session]
        await old.close()
        log.warning("quarantined: provider connections closed; model calls are refused")

    # -- apps ------------------------------------------------------------------

    def agent_app(self, proxy: ModelProxy, reporting: ReportingApi) -> web.Application:
        """The agent-facing routes: reporting, model proxy, health."""
        limits = self.store.config.limits
        # A backstop only: the handlers read bodies themselves, within the limits.
        app = web.Application(
            client_max_size=max(limits.max_request_bytes, limits.max_report_bytes)
        )
        app.router.add_post(PATH_HEARTBEAT, reporting.heartbeat)
        app.router.add_post(PATH_METRICS, reporting.metrics)
        app.router.add_post(PATH_VIOLATIONS, reporting.violations)
        # Every /v1 request goes to one handler, which forwards only allowlisted routes.
        app.router.add_route("*", "/v1/{tail:.*}", proxy.handle)
        self._add_health(app)
        return app

    def metrics_app(self) -> web.Application:
        """Prometheus metrics and the probes."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._add_health(app)
        return app

    def _add_health(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        if not self.store.current.api_key:
            return web.json_response(
                {"status": "not ready", "reason": "no ingest API key"}, status=503
            )
        return web.json_response({"status": "ready"})

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.state.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- lifecycle -------------------------------------------------------------

    async def start(self, agent_port: int | None = None, metrics_port: int | None = None) -> None:
        """Bind both listeners (ports default to the config's; 0 picks a free one) and run."""
        config = self.store.config
        upstream = new_upstream_session()
        self._sessions = [upstream]
        # Violations have a pool of their own: heartbeats and metrics never hold one up.
        violations, reports = IngestClient(self.state, 4), IngestClient(self.state, 2)
        leases = IngestClient(self.state, 2)
        self._clients = [violations, reports, leases]
        self.delivery = Delivery(self.state, violations, reports, *self.backoff)
        self.allowance = Allowance(self.state, leases)
        self.proxy = ModelProxy(self.state, upstream, self.allowance)
        agent = self.agent_app(self.proxy, ReportingApi(self.state))
        self.agent_port = await self._serve(
            agent, config.listen_host, config.proxy_port if agent_port is None else agent_port
        )
        self.metrics_port = await self._serve(
            self.metrics_app(),
            "0.0.0.0",
            config.metrics_port if metrics_port is None else metrics_port,
        )
        self._spawn(self._poll_loop)
        if self.loops:
            self._spawn(self.delivery.heartbeat_loop)
            self._spawn(self.delivery.metrics_loop)
            self._spawn(self.delivery.violation_loop)
            self._spawn(self.allowance.run)
        log.info(
            "sidecar for %s listening on %s:%d (metrics :%d)",
            config.agent_id,
            config.listen_host,
            self.agent_port,
            self.metrics_port,
        )

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)
        return int(runner.addresses[-1][1])

    def _spawn(self, loop: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            # A bug in one loop must not silently stop delivery: log and restart it.
            while True:
                try:
                    await loop()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sidecar loop %s failed; restarting", loop.__name__)
                    await asyncio.sleep(1.0)

        self.tasks.append(asyncio.create_task(guarded(), name=loop.__name__))

    def _spawn_once(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once in the background (kept referenced until it ends)."""

        async def guarded() -> None:
            try:
                await work()
            except Exception:
                log.exception("sidecar task %s failed", work.__name__)

        task = asyncio.create_task(guarded(), name=work.__name__)
        self._oneshots.add(task)
        task.add_done_callback(self._oneshots.discard)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            errors = self.store.reload_errors
            self.store.poll()
            if self.store.reload_errors > errors:
                self.state.metrics.config_reloads.labels(result="error").inc()

    async def shutdown(self, hurry: asyncio.Event | None = None) -> None:
        """On SIGTERM: drain the spools (at most ``drainSeconds``, or until ``hurry`` is
        set), stop, and leave a summary of what is still undelivered in the
        termination message. The listeners stay open while draining: the agent may
        still be finishing its calls.
        """
        config = self.store.config
        await self._cancel_loops()
        if self.delivery is not None:
            drain = asyncio.create_task(self.delivery.drain(config.drain_seconds))
            waits = {drain} if hurry is None else {drain, asyncio.create_task(hurry.wait())}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if drain.cancelled():
                log.warning("stopping without draining the violation spool")
        unreported = self.delivery.unreported_drops() if self.delivery else {}
        await self.close_leases()
        await self.stop()
        summary = summarize([self.state.spool, self.state.agent_spool], unreported)
        write_summary(config.termination_message_path, summary)

    async def close_leases(self, seconds: float = LEASE_CLOSE_SECONDS) -> None:
        """Give the unspent allowance back to the ingest API (best effort, bounded)."""
        if self.allowance is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.allowance.close()

    async def _cancel_loops(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()

    async def stop(self) -> None:
        """Stop the loops and listeners; the spool keeps whatever is undelivered."""
        await self._cancel_loops()
        for task in list(self._oneshots):
            task.cancel()
        await asyncio.gather(*self._oneshots, return_exceptions=True)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        for session in self._sessions:
            await session.close()
        self._sessions.clear()
        for client in self._clients:
            await client.close()
        self.state.inspector.shutdown(wait=False, cancel_futures=True)
