"""The composition root: which parts run together in one process.

The controller, the ingest API and the dashboard never import each other; this module
wires them. By default the operator runs the ingest API in its own event loop, on the
operator's shared connection pool (``--no-ingest`` leaves it to a standalone ``promethios
ingest``), and with ``--dashboard-port`` the governance dashboard beside it. A standalone
``promethios ingest --dashboard-port N`` serves the dashboard too.

The in-process ingest's certificate: in ``auto`` and ``cert-manager`` modes the
operator's :class:`~.controller.tls.CertificateKeeper` hands it the Secret's certificate
and key whenever they change; in ``files`` mode the ingest re-reads the files itself; in
``off`` mode it speaks plain HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Sequence

from . import heap
from .builders.tls import ServingMaterial, TlsMode
from .controller.main import Companion, configure_logging, run
from .controller.options import OperatorOptions, parse_options
from .dashboard.authz import Authorizer, KubeReviewer
from .dashboard.main import DashboardRunner, DashboardSettings, start_dashboard
from .ingest import main as ingest
from .ingest.app import SummaryAuth
from .ingest.main import IngestRunner, start_ingest
from .ingest.settings import IngestSettings
from .ingest.tls import ServingTls, TlsError
from .kube.client import Client

log = logging.getLogger(__name__)


class InProcessIngest:
    """The ingest API as a companion of the operator (see :class:`~.controller.main.Companion`)."""

    name = "ingest"

    def __init__(self, settings: IngestSettings, tls: ServingTls | None = None) -> None:
        self.settings = settings
        #: The certificate the operator keeps (None: the settings' files, or plain HTTP).
        self.tls = tls
        self.runner: IngestRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def serve_certificate(self, material: ServingMaterial | None) -> None:
        """A certificate listener: serve this certificate from the next handshake on.

        Called by the keeper's thread; once the ingest runs, the load happens on its
        event loop (never concurrently with a handshake)."""
        if self.tls is None or material is None or not material.cert_pem:
            return
        if self._loop is None:
            self._load(material)
        else:
            self._loop.call_soon_threadsafe(self._load, material)

    def _load(self, material: ServingMaterial) -> None:
        try:
            if self.tls is not None and self.tls.load(
                material.cert_pem, material.key_pem, "the ingest TLS Secret"
            ):
                log.info("in-process ingest API serves a new certificate")
        except TlsError as error:
            log.error("keeping the served certificate: %s", error)

    async def start(self, client: Client) -> None:
        """Serve the ingest API with the operator's client (one connection pool per process);
        its summary takes Kubernetes tokens (TokenReview + SubjectAccessReview)."""
        self._loop = asyncio.get_running_loop()
        self.runner = await start_ingest(
            self.settings,
            api_client=client,
            tls=self.tls,
            summary_auth=kubernetes_summary_auth(client),
        )

    async def stop(self) -> None:
        """Stop serving."""
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None


class SettledHeap:
    """The process's garbage collector kept settled (:mod:`.heap`), as a companion: the
    operator's process holds a fleet with or without the in-process ingest."""

    name = "heap"

    def __init__(self, period: float) -> None:
        self.period = period
        self._task: asyncio.Task[None] | None = None

    async def start(self, client: Client) -> None:
        self._task = heap.start(self.period)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class InProcessDashboard:
    """The governance dashboard as a companion of the operator."""

    name = "dashboard"

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.runner: DashboardRunner | None = None

    async def start(self, client: Client) -> None:
        """Watch and serve with the operator's client."""
        self.runner = await start_dashboard(self.settings, client)

    async def stop(self) -> None:
        """Stop serving."""
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None


def kubernetes_summary_auth(client: Client) -> SummaryAuth:
    """The ingest summary's Kubernetes auth: the namespaces where the token's user may
    ``get governedagents`` (the dashboard's cached reviews)."""
    authz = Authorizer(KubeReviewer(client), time.time)

    async def visible(token: str, namespaces: set[str]) -> set[str] | None:
        identity = await authz.authenticate(token, cache=True)
        return None if identity is None else await authz.visible(identity, namespaces)

    return visible


def ingest_settings(options: OperatorOptions) -> IngestSettings:
    """The in-process ingest API's settings from the operator's command line."""
    tls = options.tls
    files = tls.mode == TlsMode.FILES
    return IngestSettings(
        port=options.ingest_port,
        metrics_port=options.ingest_metrics_port,
        namespaces=options.namespaces,
        kubeconfig=options.kubeconfig,
        alert_sink_allowed_cidrs=options.alert_sink_allowed_cidrs,
        tls_cert_file=tls.cert_file if files else None,
        tls_key_file=tls.key_file if files else None,
    )


def in_process_ingest(options: OperatorOptions) -> InProcessIngest:
    """The companion, holding a certificate the operator keeps in auto/cert-manager modes."""
    kept = options.tls.mode in (TlsMode.AUTO, TlsMode.CERT_MANAGER)
    return InProcessIngest(ingest_settings(options), ServingTls() if kept else None)


def companions(options: OperatorOptions) -> tuple[list[Companion], InProcessIngest | None]:
    """What runs beside the controller, from the command line (and the in-process ingest,
    which listens for the certificates the operator keeps)."""
    found: list[Companion] = [SettledHeap(ingest_settings(options).gc_settle_seconds)]
    ingest_companion = in_process_ingest(options) if options.ingest else None
    if ingest_companion is not None:
        found.append(ingest_companion)
    if options.dashboard_port:
        settings = DashboardSettings(port=options.dashboard_port, namespaces=options.namespaces)
        found.append(InProcessDashboard(settings))
    return found, ingest_companion


def operator_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``promethios operator``; the process exit code."""
    options = parse_options(argv or [])
    configure_logging(options)
    found, ingest_companion = companions(options)
    listeners = [ingest_companion.serve_certificate] if ingest_companion is not None else []
    run(options, found, certificate_listeners=listeners)
    return 0


async def _serve_ingest_and_dashboard(settings: IngestSettings, port: int) -> None:
    from .ingest.kubeio import cluster_client

    api = cluster_client(settings.kubeconfig)
    settling = heap.start(settings.gc_settle_seconds)
    ingest_runner = await start_ingest(
        settings, api_client=api, summary_auth=kubernetes_summary_auth(api)
    )
    dashboard = await start_dashboard(
        DashboardSettings(port=port, namespaces=settings.namespaces, kubeconfig=settings.kubeconfig)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await dashboard.stop()
    await ingest_runner.stop()
    settling.cancel()


def ingest_main(argv: list[str]) -> int:
    """``promethios ingest [--dashboard-port N] ...``: the ingest API, and the dashboard."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dashboard-port", type=int, default=0)
    known, rest = parser.parse_known_args(argv)
    if not known.dashboard_port or any(arg in ("-h", "--help") for arg in rest):
        return ingest.main(rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = ingest.parse_args(rest)
    except OSError as error:
        print(f"promethios ingest: {error}")
        return 2
    asyncio.run(_serve_ingest_and_dashboard(settings, known.dashboard_port))
    return 0
