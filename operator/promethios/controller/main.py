"""The operator process: kopf with the controller's handlers, plus companions beside it.

A *companion* is anything that runs in the operator's event loop for the life of the
process — the in-process ingest API is one. The controller knows companions only through
the :class:`Companion` protocol; :mod:`promethios.composition` (the composition root)
decides which ones run, so the controller never imports the ingest API.

With leader election (the default) every replica runs its companions from the start and
only the Lease's holder runs kopf (:mod:`.election`, :mod:`.standby`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import kopf

from .. import __version__
from ..builders import BuildSettings
from ..builders.tls import ServingMaterial
from ..kube import objects
from ..kube.client import Client, ClientSettings, shared_client
from . import handlers, kopfpatch
from .context import ReconcileContext
from .election import KubeLeaseStore, LeaderElector
from .options import OperatorOptions
from .resync import Resync
from .standby import lead
from .tls import CertificateKeeper, Listener

log = logging.getLogger("promethios.operator")

NATIVE_SIDECAR_MINOR = 29  # restartable init containers are on by default from 1.29
USER_AGENT = f"promethios-operator/{__version__}"


def make_context(options: OperatorOptions) -> ReconcileContext:
    """The shared client and the build settings (sidecar flavour from the server version)."""
    client = shared_client(ClientSettings(kubeconfig=options.kubeconfig))
    client.user_agent = USER_AGENT
    minor = objects.server_minor_version(client)
    settings = BuildSettings(
        sidecar_image=options.sidecar_image,
        ingest_url=options.ingest_url,
        native_sidecar=minor >= NATIVE_SIDECAR_MINOR,
        ingest_peer=options.ingest_peer,
        allowed_sidecar_images=options.allowed_sidecar_images,
        external_ingest_url=options.external_ingest_url,
    )
    log.info("API server minor version %d; native sidecar: %s", minor, settings.native_sidecar)
    log.info(
        "sidecar images allowed: %s",
        ", ".join([settings.sidecar_image, *settings.allowed_sidecar_images]),
    )
    return ReconcileContext(client=client, settings=settings)


class Companion(Protocol):
    """Runs in the operator's event loop from start to stop, leader or standby."""

    name: str

    async def start(self, client: Client) -> None:
        """Start (``client`` is the operator's shared connection pool)."""

    async def stop(self) -> None:
        """Stop; called once at cleanup, only if :meth:`start` returned."""


async def start_companions(companions: Sequence[Companion], client: Client) -> list[Companion]:
    """Start each companion (before, and whether or not, this replica reconciles)."""
    started: list[Companion] = []
    try:
        for companion in companions:
            await companion.start(client)
            started.append(companion)
    except BaseException:
        await stop_companions(started)
        raise
    return started


async def stop_companions(started: list[Companion]) -> None:
    """Stop the started companions, the last started first."""
    while started:
        await started.pop().stop()


def register_login(registry: kopf.OperatorRegistry, ctx: ReconcileContext) -> None:
    """kopf connects with the same identity as the shared client (honours --kubeconfig)."""

    @kopf.on.login(registry=registry, id="login")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(**objects.connection_facts(ctx.client))


def publish_ca_bundle(ctx: ReconcileContext, resync: Resync) -> Listener:
    """A listener putting the CA bundle into the build settings; once the operator runs,
    a new bundle reconciles every agent at once (their ConfigMaps must carry it)."""

    def publish(material: ServingMaterial | None) -> None:
        bundle = material.ca_bundle_pem.decode() if material and material.ca_bundle_pem else None
        if bundle == ctx.settings.ca_bundle:
            return
        ctx.settings = dataclasses.replace(ctx.settings, ca_bundle=bundle)
        if resync.is_alive():
            log.info("new ingest CA bundle: reconciling every agent")
            resync.pass_once(spread=False)

    return publish


def run(
    options: OperatorOptions,
    companions: Sequence[Companion] = (),
    certificate_listeners: Sequence[Listener] = (),
) -> None:
    """Run the companions and, while this replica leads, kopf, until a signal stops it.

    The ingest certificate is had (issued, or waited for) before kopf starts, so the
    first reconcile already publishes the CA bundle; ``certificate_listeners`` (the
    in-process ingest) hear of it then and of every change after.
    """
    ctx = make_context(options)
    registry = kopf.OperatorRegistry()
    handlers.register(ctx, registry, options.namespaces)
    register_login(registry, ctx)
    resync = Resync(ctx, options.resync_seconds, options.namespaces)
    identity = options.tls.identity(options.ingest_url)
    keeper = CertificateKeeper(ctx.client, options.tls, identity)
    keeper.listeners += [publish_ca_bundle(ctx, resync), *certificate_listeners]
    keeper.start()
    try:
        asyncio.run(serve(options, ctx, registry, companions, resync))
    finally:
        keeper.stop()
        resync.stop()


async def serve(
    options: OperatorOptions,
    ctx: ReconcileContext,
    registry: kopf.OperatorRegistry,
    companions: Sequence[Companion],
    resync: Resync,
) -> None:
    """Every replica runs the companions (the ingest API) from the start; only the Lease's
    holder runs kopf and the resync. A leader stopping releases the Lease after kopf has
    stopped, so a standby takes over within its retry period."""
    started = await start_companions(companions, ctx.client)
    elector: LeaderElector | None = None
    try:
        if options.election is not None:
            elector = LeaderElector(options.election, KubeLeaseStore(ctx.client, options.election))
            if not await lead(elector, options.liveness_port):
                return
        kopfpatch.apply()  # a start over many objects in linear, not quadratic, time
        resync.start()
        liveness = (
            f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
        )
        await kopf.operator(
            registry=registry,
            standalone=options.standalone,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            liveness_endpoint=liveness,
        )
    finally:
        resync.stop()  # before the Lease is released: no reconcile after the handover
        if elector is not None:
            await asyncio.to_thread(elector.stop)
        await stop_companions(started)


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
