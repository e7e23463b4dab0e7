"""The composition root: which parts run together in the ``promethios operator`` process.

The controller and the ingest API never import each other; this module wires them. By
default the operator runs the ingest API in its own event loop, on the operator's shared
connection pool (``--no-ingest`` leaves it to a standalone ``promethios ingest``).

The in-process ingest's certificate: in ``auto`` and ``cert-manager`` modes the
operator's :class:`~.controller.tls.CertificateKeeper` hands it the Secret's certificate
and key whenever they change; in ``files`` mode the ingest re-reads the files itself; in
``off`` mode it speaks plain HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .builders.tls import ServingMaterial, TlsMode
from .controller.main import OperatorOptions, configure_logging, parse_options, run
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
        """Serve the ingest API with the operator's client (one connection pool per process)."""
        self._loop = asyncio.get_running_loop()
        self.runner = await start_ingest(self.settings, api_client=client, tls=self.tls)

    async def stop(self) -> None:
        """Stop serving."""
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None


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


def operator_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``promethios operator``; the process exit code."""
    options = parse_options(argv or [])
    configure_logging(options)
    if not options.ingest:
        run(options)
        return 0
    ingest = in_process_ingest(options)
    run(options, [ingest], certificate_listeners=[ingest.serve_certificate])
    return 0
