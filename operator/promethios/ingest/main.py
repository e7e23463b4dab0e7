"""Entry points: ``promethios ingest`` (:func:`main`) and :func:`start_ingest` for the operator.

The operator runs the ingest API in its own event loop by awaiting :func:`start_ingest`
from a kopf startup handler and :meth:`IngestRunner.stop` from a cleanup handler.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api.alertsink import allowed_cidr
from .alerts import SinkResolver
from .app import SummaryAuth, build_app
from .keystore import KeyStore
from .service import EventSink, IngestService
from .settings import IngestSettings
from .writer import StatusSink

if TYPE_CHECKING:
    from .kubeio import ClusterFeed

log = logging.getLogger(__name__)


@dataclass
class IngestRunner:
    """A running ingest API: its service, HTTP runner, cluster feed and bound port."""

    service: IngestService
    runner: web.AppRunner
    port: int
    feed: ClusterFeed | None = None

    async def stop(self) -> None:
        """Stop serving, stop the watches and background work."""
        if self.feed is not None:
            self.feed.stop()
        await self.runner.cleanup()
        await self.service.stop()


async def start_ingest(
    settings: IngestSettings,
    *,
    api_client: Any = None,
    status_sink: StatusSink | None = None,
    event_sink: EventSink | None = None,
    sink_resolver: SinkResolver | None = None,
    keystore: KeyStore | None = None,
    clock: Callable[[], float] = time.time,
    summary_auth: SummaryAuth | None = None,
) -> IngestRunner:
    """Start the ingest API on the running loop and return once it listens.

    With no ``status_sink`` it talks to the cluster (``api_client``, else the shared
    client from ``settings.kubeconfig``) and watches agents, policies and key Secrets.
    With a ``status_sink`` (tests, benchmarks) it runs without a cluster: keys come from
    ``keystore`` and agents from :meth:`IngestService.upsert_agent`.
    """
    feed = None
    if status_sink is None:
        from . import kubeio  # imports the Kubernetes client only when a cluster is used

        api = api_client or kubeio.cluster_client(settings.kubeconfig)
        status_sink = kubeio.KubeStatusSink(api)
        event_sink = event_sink or kubeio.KubeEventSink(api)
        sink_resolver = sink_resolver or kubeio.KubeSinkResolver(api)
        service = IngestService(
            settings,
            status_sink,
            keystore,
            event_sink,
            sink_resolver,
            clock,
            sink_status=kubeio.KubeSinkStatus(api),
        )
        feed = kubeio.ClusterFeed(service, api)
    else:
        service = IngestService(settings, status_sink, keystore, event_sink, sink_resolver, clock)
        service.ready.set()
    service.start()
    if feed is not None:
        feed.start()
    runner = web.AppRunner(build_app(service, summary_auth), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
    await site.start()
    port = _bound_port(runner) or settings.port
    log.info("ingest API listening on %s:%s", settings.host, port)
    return IngestRunner(service, runner, port, feed)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def parse_args(argv: list[str]) -> IngestSettings:
    """Settings from the command line."""
    parser = argparse.ArgumentParser(
        prog="promethios ingest", description="Run the governance ingest API."
    )
    parser.add_argument("--host", default="0.0.0.0", help="listen address")
    parser.add_argument("--port", type=int, default=8443, help="listen port (default 8443)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig path (default: in-cluster)")
    parser.add_argument(
        "--namespace", action="append", default=[], help="namespace to serve (repeatable)"
    )
    parser.add_argument(
        "--read-token-file", default=None, help="file holding the summary read token"
    )
    parser.add_argument(
        "--flush-interval", type=float, default=30.0, help="seconds between routine writes"
    )
    parser.add_argument("--max-body-bytes", type=int, default=64 * 1024, help="request body limit")
    add_allow_cidr_option(parser)
    args = parser.parse_args(argv)
    token = Path(args.read_token_file).read_text().strip() if args.read_token_file else None
    return IngestSettings(
        host=args.host,
        port=args.port,
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespace),
        read_token=token or None,
        flush_interval_seconds=args.flush_interval,
        max_body_bytes=args.max_body_bytes,
        alert_sink_allowed_cidrs=tuple(args.alert_sink_allow_cidr),
    )


def add_allow_cidr_option(parser: argparse.ArgumentParser) -> None:
    """``--alert-sink-allow-cidr CIDR`` (repeatable; ``promethios operator`` has the same)."""
    parser.add_argument(
        "--alert-sink-allow-cidr",
        action="append",
        default=[],
        type=cidr_argument,
        metavar="CIDR",
        help="network alert deliveries may reach although loopback/private, and the only ones "
        "plain http may reach (repeatable; e.g. an in-cluster receiver's range). Metadata, "
        "link-local, unspecified and multicast addresses stay refused.",
    )


def cidr_argument(text: str) -> IPv4Network | IPv6Network:
    """argparse type for one allowlist entry (a clear message on a bad value)."""
    try:
        return allowed_cidr(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


async def _serve(settings: IngestSettings) -> None:
    runner = await start_ingest(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.stop()


def main(argv: list[str]) -> int:
    """``promethios ingest [--port N] [--kubeconfig F] [--namespace NS]... `` (see ``--help``).

    Returns the exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = parse_args(argv)
    except OSError as error:
        print(f"promethios ingest: {error}")
        return 2
    asyncio.run(_serve(settings))
    return 0
