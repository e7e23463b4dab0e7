"""The operator process: kopf with the controller's handlers, plus companions beside it.

A *companion* is anything that runs in kopf's event loop for the life of the operator —
the in-process ingest API is one. The controller knows companions only through the
:class:`Companion` protocol; :mod:`promethios.composition` (the composition root) decides
which ones run, so the controller never imports the ingest API.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Protocol

import kopf

from .. import __version__
from ..api.alertsink import allowed_cidr
from ..builders import BuildSettings
from ..builders.sidecar import DEFAULT_INGEST_URL, DEFAULT_SIDECAR_IMAGE
from ..kube import objects
from ..kube.client import Client, ClientSettings, shared_client
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
    alert_sink_allowed_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()
    """For the in-process ingest API: where AlertSink deliveries may go beyond the default."""


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
    parser.add_argument(
        "--alert-sink-allow-cidr",
        action="append",
        default=[],
        type=_cidr,
        metavar="CIDR",
        help="in-process ingest API: network alert deliveries may reach although "
        "loopback/private, and the only ones plain http may reach (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _cidr(text: str) -> IPv4Network | IPv6Network:
    try:
        return allowed_cidr(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
        alert_sink_allowed_cidrs=tuple(args.alert_sink_allow_cidr),
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


class Companion(Protocol):
    """Runs in the operator's event loop from kopf's startup to its cleanup."""

    name: str

    async def start(self, client: Client) -> None:
        """Start (``client`` is the operator's shared connection pool)."""

    async def stop(self) -> None:
        """Stop; called once at cleanup, only if :meth:`start` returned."""


def register_companions(
    registry: kopf.OperatorRegistry, ctx: ReconcileContext, companions: Sequence[Companion]
) -> None:
    """Start each companion at kopf's startup and stop the started ones at its cleanup."""
    started: list[Companion] = []
    for companion in companions:

        @kopf.on.startup(registry=registry, id=f"start-{companion.name}")
        async def start(companion: Companion = companion, **_: Any) -> None:
            await companion.start(ctx.client)
            started.append(companion)

    @kopf.on.cleanup(registry=registry, id="stop-companions")
    async def stop(**_: Any) -> None:
        while started:
            await started.pop().stop()


def register_login(registry: kopf.OperatorRegistry, ctx: ReconcileContext) -> None:
    """kopf connects with the same identity as the shared client (honours --kubeconfig)."""

    @kopf.on.login(registry=registry, id="login")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(**objects.connection_facts(ctx.client))


def run(
    options: OperatorOptions,
    companions: Sequence[Companion] = (),
    stop_flag: threading.Event | None = None,
) -> None:
    """Run kopf until stopped (signal or ``stop_flag``), with the resync thread beside it."""
    ctx = make_context(options)
    registry = kopf.OperatorRegistry()
    handlers.register(ctx, registry)
    register_login(registry, ctx)
    register_companions(registry, ctx, companions)
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


def configure_logging(options: OperatorOptions) -> None:
    """Log format and levels of the operator process."""
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not options.verbose:
        # kopf logs every handled watch event at INFO; the reconcile logs the writes.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
