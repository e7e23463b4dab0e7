"""``promethios operator``: the kopf operator (and, by default, the ingest API in-process)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from .. import __version__
from ..builders import BuildSettings
from ..builders.sidecar import DEFAULT_INGEST_URL, DEFAULT_SIDECAR_IMAGE
from ..kube import objects
from ..kube.client import ClientSettings, shared_client
from . import handlers
from .reconcile import ReconcileContext
from .resync import Resync

log = logging.getLogger("promethios.operator")

NATIVE_SIDECAR_MINOR = 29  # restartable init containers are on by default from 1.29
USER_AGENT = f"promethios-operator/{__version__}"


@dataclass(frozen=True)
class OperatorOptions:
    """The parsed command line."""

    namespaces: tuple[str, ...]
    kubeconfig: str | None
    ingest: bool
    ingest_port: int
    liveness_port: int | None
    sidecar_image: str
    ingest_url: str
    standalone: bool
    resync_seconds: float
    verbose: bool


def build_parser() -> argparse.ArgumentParser:
    """The ``promethios operator`` argument parser."""
    parser = argparse.ArgumentParser(prog="promethios operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file; default: in-cluster, then ~/.kube")
    parser.add_argument(
        "--ingest",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the ingest API in this process (default: on)",
    )
    parser.add_argument("--ingest-port", type=int, default=8443, help="ingest API port")
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=8080,
        help="port of kopf's liveness endpoint /healthz (0 disables it)",
    )
    parser.add_argument(
        "--sidecar-image",
        default=DEFAULT_SIDECAR_IMAGE,
        help="governance sidecar image (a GovernedAgent may override it)",
    )
    parser.add_argument(
        "--ingest-url", default=DEFAULT_INGEST_URL, help="the ingest API URL the sidecars report to"
    )
    parser.add_argument(
        "--standalone",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run without kopf peering (default: on; one replica)",
    )
    parser.add_argument(
        "--resync-seconds", type=float, default=300.0, help="interval of the periodic drift repair"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def parse_options(argv: Sequence[str]) -> OperatorOptions:
    """Parse the command line into :class:`OperatorOptions`."""
    args = build_parser().parse_args(list(argv))
    return OperatorOptions(
        namespaces=tuple(args.namespaces),
        kubeconfig=args.kubeconfig,
        ingest=args.ingest,
        ingest_port=args.ingest_port,
        liveness_port=args.liveness_port or None,
        sidecar_image=args.sidecar_image,
        ingest_url=args.ingest_url,
        standalone=args.standalone,
        resync_seconds=args.resync_seconds,
        verbose=args.verbose,
    )


def make_context(options: OperatorOptions) -> ReconcileContext:
    """The shared client and the build settings (sidecar flavour from the server version)."""
    client = shared_client(ClientSettings(kubeconfig=options.kubeconfig))
    client.user_agent = USER_AGENT
    minor = objects.server_minor_version(client)
    settings = BuildSettings(
        sidecar_image=options.sidecar_image,
        ingest_url=options.ingest_url,
        native_sidecar=minor >= NATIVE_SIDECAR_MINOR,
    )
    log.info("API server minor version %d; native sidecar: %s", minor, settings.native_sidecar)
    return ReconcileContext(client=client, settings=settings)


def register_ingest(
    registry: kopf.OperatorRegistry, options: OperatorOptions, ctx: ReconcileContext
) -> None:
    """Start the ingest API inside kopf's event loop when in-process ingest is on."""
    if not options.ingest:
        return
    from ..ingest.main import IngestRunner, start_ingest
    from ..ingest.settings import IngestSettings

    runners: list[IngestRunner] = []

    @kopf.on.startup(registry=registry, id="ingest")
    async def start(**_: Any) -> None:
        settings = IngestSettings(
            port=options.ingest_port,
            namespaces=options.namespaces,
            kubeconfig=options.kubeconfig,
        )
        # The same connection pool as the reconciler: one client per process.
        runners.append(await start_ingest(settings, api_client=ctx.client))

    @kopf.on.cleanup(registry=registry, id="ingest-stop")
    async def stop(**_: Any) -> None:
        while runners:
            await runners.pop().stop()


def register_login(registry: kopf.OperatorRegistry, ctx: ReconcileContext) -> None:
    """kopf connects with the same identity as the shared client (honours --kubeconfig)."""

    @kopf.on.login(registry=registry, id="login")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(**objects.connection_facts(ctx.client))


def run(options: OperatorOptions, stop_flag: threading.Event | None = None) -> None:
    """Run kopf until stopped (signal or ``stop_flag``), with the resync thread beside it."""
    ctx = make_context(options)
    registry = kopf.OperatorRegistry()
    handlers.register(ctx, registry)
    register_login(registry, ctx)
    register_ingest(registry, options, ctx)
    resync = Resync(ctx, options.resync_seconds, options.namespaces)
    resync.start()
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=options.standalone,
                clusterwide=not options.namespaces,
                namespaces=list(options.namespaces),
                liveness_endpoint=liveness,
                stop_flag=stop_flag,
            )
        )
    finally:
        resync.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``promethios operator``; the process exit code."""
    options = parse_options(argv or [])
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not options.verbose:
        # kopf logs every handled watch event at INFO; the reconcile logs the writes.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    run(options)
    return 0
