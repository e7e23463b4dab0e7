"""The composition root: which parts run together in the ``promethios operator`` process.

The controller and the ingest API never import each other; this module wires them. By
default the operator runs the ingest API in its own event loop, on the operator's shared
connection pool (``--no-ingest`` leaves it to a standalone ``promethios ingest``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .controller.main import OperatorOptions, configure_logging, parse_options, run
from .ingest.main import IngestRunner, start_ingest
from .ingest.settings import IngestSettings
from .kube.client import Client


class InProcessIngest:
    """The ingest API as a companion of the operator (see :class:`~.controller.main.Companion`)."""

    name = "ingest"

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.runner: IngestRunner | None = None

    async def start(self, client: Client) -> None:
        """Serve the ingest API with the operator's client (one connection pool per process)."""
        self.runner = await start_ingest(self.settings, api_client=client)

    async def stop(self) -> None:
        """Stop serving."""
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None


def ingest_settings(options: OperatorOptions) -> IngestSettings:
    """The in-process ingest API's settings from the operator's command line."""
    return IngestSettings(
        port=options.ingest_port,
        namespaces=options.namespaces,
        kubeconfig=options.kubeconfig,
        alert_sink_allowed_cidrs=options.alert_sink_allowed_cidrs,
    )


def operator_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``promethios operator``; the process exit code."""
    options = parse_options(argv or [])
    configure_logging(options)
    companions = [InProcessIngest(ingest_settings(options))] if options.ingest else []
    run(options, companions)
    return 0
