"""Entry points: ``promethios dashboard`` (:func:`main`) and :func:`start_dashboard`.

The operator runs the dashboard as a companion in its own event loop (wired by
:mod:`promethios.composition`, ``--dashboard-port``); ``promethios dashboard`` runs it on
its own (beside a standalone ingest, or anywhere with a kubeconfig). Either way it
watches GovernedAgents, GovernancePolicies and AlertSinks and needs, besides ``get``,
``list`` and ``watch`` on those, only ``create`` on ``tokenreviews`` and
``subjectaccessreviews``: everything done on a viewer's behalf uses the viewer's token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from dataclasses import dataclass

from aiohttp import web

from ..kube.client import Client, ClientSettings, shared_client
from .app import build_app
from .authz import Authorizer, KubeReviewer
from .cache import CacheFeed, FleetCache
from .context import Dashboard
from .viewer import KubeViewer

log = logging.getLogger(__name__)
DEFAULT_PORT = 8090


@dataclass(frozen=True)
class DashboardSettings:
    """Where the dashboard listens and what it shows."""

    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = DEFAULT_PORT
    """TCP port (0 picks a free one; the runner reports it)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces shown (each viewer sees the subset RBAC allows); empty means all."""
    kubeconfig: str | None = None
    """Kubeconfig for the shared client when none is given (``promethios dashboard``)."""
    live_every_seconds: int = 5
    """How often the agent page's live region refreshes."""
    resync_seconds: float = 300.0
    """How often the watches re-list from scratch."""


@dataclass
class DashboardRunner:
    """A running dashboard: its state, HTTP runner, watch feed and bound port."""

    dashboard: Dashboard
    runner: web.AppRunner
    port: int
    feed: CacheFeed
    viewer: KubeViewer

    async def stop(self) -> None:
        """Stop serving and watching."""
        self.feed.stop()
        await self.runner.cleanup()
        self.viewer.close()


async def start_dashboard(
    settings: DashboardSettings, api: Client | None = None
) -> DashboardRunner:
    """Start watching and serving on the running loop; return once it listens."""
    api = api or shared_client(ClientSettings(kubeconfig=settings.kubeconfig))
    cache = FleetCache()
    feed = CacheFeed(cache, api, settings.namespaces, settings.resync_seconds)
    feed.start()
    viewer = KubeViewer(api)
    dashboard = Dashboard(
        cache=cache,
        authz=Authorizer(KubeReviewer(api), time.time),
        viewer=viewer,
        live_every=settings.live_every_seconds,
    )
    runner = web.AppRunner(build_app(dashboard), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = next(
        (int(a[1]) for a in runner.addresses if isinstance(a, tuple) and len(a) >= 2),
        settings.port,
    )
    log.info("dashboard listening on %s:%s", settings.host, port)
    return DashboardRunner(dashboard, runner, port, feed, viewer)


def parse_args(argv: list[str]) -> DashboardSettings:
    """``promethios dashboard`` options."""
    parser = argparse.ArgumentParser(
        prog="promethios dashboard", description="Serve the governance dashboard."
    )
    parser.add_argument("--host", default="0.0.0.0", help="listen address")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="listen port (8090)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster)")
    parser.add_argument(
        "--namespace", action="append", default=[], help="namespace to show (repeatable)"
    )
    args = parser.parse_args(argv)
    return DashboardSettings(
        host=args.host,
        port=args.port,
        namespaces=tuple(args.namespace),
        kubeconfig=args.kubeconfig,
    )


async def _serve(settings: DashboardSettings) -> None:
    running = await start_dashboard(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await running.stop()


def main(argv: list[str]) -> int:
    """``promethios dashboard [--port N] [--namespace NS]...``; the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(parse_args(argv)))
    return 0
