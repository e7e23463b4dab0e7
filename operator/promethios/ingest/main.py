"""Entry points: ``promethios ingest`` (:func:`main`) and :func:`start_ingest` for the operator.

The operator runs the ingest API in its own event loop by awaiting :func:`start_ingest`
from a kopf startup handler and :meth:`IngestRunner.stop` from a cleanup handler.

Two listeners: the report API (HTTPS with the certificate in the settings' files, or the
:class:`~.tls.ServingTls` the caller keeps; plain HTTP only when neither is given, with a
warning) and the plain-HTTP metrics/probe listener (:func:`~.app.build_metrics_app`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import heap
from ..api.alertsink import allowed_cidr
from .alerts import SinkResolver
from .app import SummaryAuth, build_app, build_metrics_app
from .keystore import KeyStore
from .service import EventSink, IngestService
from .settings import IngestSettings
from .tls import CertificateFiles, ServingTls, TlsError
from .writer import StatusSink

if TYPE_CHECKING:
    from .kubeio import ClusterFeed

log = logging.getLogger(__name__)


PLAIN_HTTP_WARNING = (
    "ingest API serves PLAIN HTTP: agent API keys and reports cross the network in clear "
    "text. Use this for local development only."
)


@dataclass
class IngestRunner:
    """A running ingest API: its service, HTTP runners, cluster feed and bound ports."""

    service: IngestService
    runner: web.AppRunner
    port: int
    feed: ClusterFeed | None = None
    metrics_runner: web.AppRunner | None = None
    metrics_port: int = 0
    tls: ServingTls | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        """``https`` when the report API speaks TLS, else ``http``."""
        return "https" if self.tls is not None else "http"

    async def stop(self) -> None:
        """Stop serving, stop the watches and background work."""
        for task in self.tasks:
            task.cancel()
        if self.feed is not None:
            self.feed.stop()
        await self.runner.cleanup()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        await self.service.stop()


def serving_tls(
    settings: IngestSettings, tls: ServingTls | None
) -> tuple[ServingTls | None, CertificateFiles | None]:
    """The report API's TLS: the settings' files (loaded now: a bad pair fails the start),
    else the caller's context, else None (plain HTTP)."""
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        files = CertificateFiles(
            tls or ServingTls(),
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_reload_seconds,
        )
        files.load()
        return files.tls, files
    if tls is not None and not tls.loaded:
        raise TlsError("the ingest API was given a TLS context without a certificate")
    return tls, None


async def start_ingest(
    settings: IngestSettings,
    *,
    api_client: Any = None,
    status_sink: StatusSink | None = None,
    event_sink: EventSink | None = None,
    sink_resolver: SinkResolver | None = None,
    keystore: KeyStore | None = None,
    clock: Callable[[], float] = time.time,
    tls: ServingTls | None = None,
    summary_auth: SummaryAuth | None = None,
) -> IngestRunner:
    """Start the ingest API on the running loop and return once it listens.

    With no ``status_sink`` it talks to the cluster (``api_client``, else the shared
    client from ``settings.kubeconfig``) and watches agents, policies and key Secrets.
    With a ``status_sink`` (tests, benchmarks) it runs without a cluster: keys come from
    ``keystore`` and agents from :meth:`IngestService.upsert_agent`. ``tls`` is a
    certificate the caller keeps current (the operator's in-process ingest).
    """
    tls, files = serving_tls(settings, tls)
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
            usage_store=kubeio.KubeUsageStore(api),
            sink_status=kubeio.KubeSinkStatus(api),
        )
        feed = kubeio.ClusterFeed(service, api)
    else:
        service = IngestService(settings, status_sink, keystore, event_sink, sink_resolver, clock)
        service.ready.set()
    service.start()
    if feed is not None:
        feed.start()
    runner = await _serve_app(build_app(service, summary_auth), settings.host, settings.port, tls)
    metrics = await _serve_app(build_metrics_app(service), settings.metrics_host,
                               settings.metrics_port, None)  # fmt: skip
    result = IngestRunner(service, runner, _bound_port(runner) or settings.port, feed, metrics)
    result.metrics_port = _bound_port(metrics) or settings.metrics_port
    result.tls = tls
    if files is not None:
        result.tasks.append(asyncio.create_task(files.watch(), name="ingest-tls-reload"))
    if tls is None:
        log.warning(PLAIN_HTTP_WARNING)
    log.info(
        "ingest API listening on %s://%s:%s (metrics and probes on http://%s:%s)",
        result.scheme, settings.host, result.port, settings.metrics_host, result.metrics_port,
    )  # fmt: skip
    return result


async def _serve_app(
    app: web.Application, host: str, port: int, tls: ServingTls | None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    context = tls.context if tls is not None else None
    await web.TCPSite(runner, host, port, backlog=1024, ssl_context=context).start()
    return runner


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
    parser.add_argument(
        "--port", type=int, default=8443, help="port of the report API (default 8443)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="plain-HTTP port of /metrics, /healthz and /readyz (default 9090)",
    )
    parser.add_argument("--tls-cert-file", help="PEM certificate chain to serve (HTTPS)")
    parser.add_argument("--tls-key-file", help="PEM private key of --tls-cert-file")
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="serve the report API without TLS (local development only: keys in clear text)",
    )
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
    tls_files = (args.tls_cert_file, args.tls_key_file)
    if args.plain_http and any(tls_files):
        parser.error("--plain-http and --tls-cert-file/--tls-key-file exclude each other")
    if not args.plain_http and not all(tls_files):
        parser.error(
            "give --tls-cert-file and --tls-key-file (HTTPS), or --plain-http for local development"
        )
    token = Path(args.read_token_file).read_text().strip() if args.read_token_file else None
    return IngestSettings(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
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
    settling = heap.start(settings.gc_settle_seconds)  # this process is the ingest's own
    runner = await start_ingest(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.stop()
    settling.cancel()


def main(argv: list[str]) -> int:
    """``promethios ingest --tls-cert-file F --tls-key-file K [--port N] ...`` (see ``--help``).

    Returns the exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = parse_args(argv)
    except (OSError, ValueError) as error:
        print(f"promethios ingest: {error}")
        return 2
    try:
        asyncio.run(_serve(settings))
    except TlsError as error:
        print(f"promethios ingest: {error}")
        return 2
    return 0
