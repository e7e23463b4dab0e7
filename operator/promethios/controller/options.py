"""The operator's command line: every flag, its default and its check, parsed into
:class:`OperatorOptions`.

A bad flag fails at start with argparse's message naming it (an image pattern, a CIDR,
an ingest peer, the TLS material), never later inside a reconcile.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from urllib.parse import urlsplit

from ..api.alertsink import allowed_cidr
from ..builders.images import parse_image_pattern
from ..builders.sidecar import DEFAULT_INGEST_URL, DEFAULT_SIDECAR_IMAGE, IngestPeer
from ..builders.tls import TlsMode
from .leader import ElectionSettings, default_identity
from .tls import TlsOptions


@dataclass(frozen=True)
class OperatorOptions:
    """The parsed command line."""

    namespaces: tuple[str, ...]
    kubeconfig: str | None
    ingest: bool
    ingest_port: int
    ingest_metrics_port: int
    liveness_port: int | None
    sidecar_image: str
    ingest_url: str
    ingest_peer: IngestPeer | None
    standalone: bool
    resync_seconds: float
    verbose: bool
    tls: TlsOptions = field(default_factory=TlsOptions)
    #: Patterns of the sidecar images a GovernedAgent may name besides ``sidecar_image``.
    allowed_sidecar_images: tuple[str, ...] = ()
    alert_sink_allowed_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()
    """For the in-process ingest API: where AlertSink deliveries may go beyond the default."""
    external_ingest_url: str | None = None
    """The ingest API URL the sidecars of ``runtime: External`` agents report to."""
    dashboard_port: int | None = None
    """Port of the governance dashboard served beside the operator (None: no dashboard)."""
    election: ElectionSettings | None = None
    """The Lease only whose holder reconciles (None: ``--no-leader-elect``, this one does)."""


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
        "--ingest-metrics-port",
        type=int,
        default=9090,
        help="plain-HTTP port of the in-process ingest API's /metrics, /healthz and /readyz",
    )
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=8080,
        help="port of kopf's liveness endpoint /healthz (0 disables it)",
    )
    parser.add_argument(
        "--sidecar-image",
        default=DEFAULT_SIDECAR_IMAGE,
        help="governance sidecar image (always allowed; a GovernedAgent may name another "
        "only if --allowed-sidecar-image allows it)",
    )
    parser.add_argument(
        "--allowed-sidecar-image",
        action="append",
        default=[],
        dest="allowed_sidecar_images",
        type=_image_pattern,
        metavar="PATTERN",
        help="a spec.sidecar.image the operator may run besides --sidecar-image (repeatable): "
        "an exact image, or a prefix ending in '*' after '/', ':' or '@', e.g. "
        "'ghcr.io/promethios/*'; an agent naming any other image gets no workload",
    )
    parser.add_argument(
        "--ingest-url",
        help=f"the ingest API URL the sidecars report to (default {DEFAULT_INGEST_URL}; "
        "http:// only with --tls-mode=off)",
    )
    parser.add_argument(
        "--external-ingest-url",
        help="the ingest API URL as agents outside the cluster (spec.runtime: External) reach "
        "it, e.g. through an Ingress or LoadBalancer (default: --ingest-url); its host joins "
        "the certificate's names",
    )
    parser.add_argument(
        "--ingest-pods",
        metavar="NAMESPACE/SELECTOR",
        help="the ingest API's pods, e.g. promethios-system/app.kubernetes.io/name=x: "
        "a quarantine still lets a sidecar reach them (default: quarantine denies all egress)",
    )
    parser.add_argument(
        "--ingest-cidr", help="or the ingest's address range, when it runs outside the cluster"
    )
    parser.add_argument(
        "--ingest-pod-port", type=int, default=8443, help="the ingest container's port"
    )
    parser.add_argument(
        "--standalone",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run kopf without its peering (default: on; --leader-elect decides which replica "
        "reconciles)",
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
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=0,
        help="serve the governance dashboard on this port (default 0: off; the chart uses 8090)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_tls_arguments(parser.add_argument_group("ingest TLS"))
    add_election_arguments(parser.add_argument_group("leader election"))
    return parser


def add_election_arguments(group: argparse._ArgumentGroup) -> None:
    """``--leader-elect*``: several replicas, one reconciling (see controller/leader.py)."""
    defaults = ElectionSettings()
    group.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="reconcile only while holding a coordination.k8s.io Lease, so several replicas "
        "can run (each serves the ingest API; one reconciles). The chart and manifests turn "
        "it on; off by default, so a single local run reconciles at once",
    )
    group.add_argument(
        "--leader-election-lease-name", default=defaults.name, help="name of the Lease"
    )
    group.add_argument(
        "--leader-election-namespace",
        help="namespace of the Lease (default: --tls-secret-namespace, i.e. $POD_NAMESPACE)",
    )
    group.add_argument(
        "--leader-election-identity",
        help="this replica's holder identity (default: $POD_NAME or the host name, plus a "
        "random suffix)",
    )
    group.add_argument(
        "--leader-election-lease-duration",
        type=float,
        default=defaults.lease_duration,
        metavar="SECONDS",
        help="how long a standby waits, after the Lease last changed, before taking it over "
        "from a leader that stopped renewing (default %(default)s)",
    )
    group.add_argument(
        "--leader-election-renew-deadline",
        type=float,
        default=defaults.renew_deadline,
        metavar="SECONDS",
        help="a leader that has not renewed for this long stops (exits) (default %(default)s)",
    )
    group.add_argument(
        "--leader-election-retry-period",
        type=float,
        default=defaults.retry_period,
        metavar="SECONDS",
        help="interval of the renewals and of a standby's tries (default %(default)s)",
    )


def _election(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ElectionSettings | None:
    """The ``--leader-elect*`` flags, checked together; an error names the flag."""
    if not args.leader_elect:
        return None
    settings = ElectionSettings(
        name=args.leader_election_lease_name,
        namespace=args.leader_election_namespace or args.tls_secret_namespace,
        identity=args.leader_election_identity or default_identity(),
        lease_duration=args.leader_election_lease_duration,
        renew_deadline=args.leader_election_renew_deadline,
        retry_period=args.leader_election_retry_period,
    )
    problem = settings.problem()
    if problem:
        parser.error(problem)
    return settings


def ingest_peer(pods: str | None, cidr: str | None, port: int) -> IngestPeer | None:
    """The ingest's location for the quarantine NetworkPolicy, from the command line."""
    if cidr:
        return IngestPeer(cidr=cidr, port=port)
    if not pods:
        return None
    namespace, separator, selector = pods.partition("/")
    labels = dict(pair.split("=", 1) for pair in selector.split(",") if "=" in pair)
    if not separator or not namespace or not labels:
        raise SystemExit(f"--ingest-pods: expected NAMESPACE/key=value[,key=value], got {pods!r}")
    return IngestPeer(namespace=namespace, pod_labels=labels, port=port)


def _cidr(text: str) -> IPv4Network | IPv6Network:
    try:
        return allowed_cidr(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_tls_arguments(group: argparse._ArgumentGroup) -> None:
    """``--tls-*``: where the ingest API's certificate comes from (see controller/tls.py)."""
    group.add_argument(
        "--tls-mode",
        choices=[mode.value for mode in TlsMode],
        default=TlsMode.AUTO.value,
        help="auto: the operator issues and renews it (default); cert-manager: read the "
        "Secret cert-manager fills; files: --tls-cert-file/--tls-key-file/--tls-ca-file; "
        "off: plain HTTP (local development only)",
    )
    group.add_argument(
        "--tls-secret",
        default="promethios-operator-ingest-tls",
        help="Secret holding the certificate",
    )
    group.add_argument(
        "--tls-secret-namespace",
        default=os.environ.get("POD_NAMESPACE") or "promethios-system",
        help="namespace of that Secret and of the ingest Service (default $POD_NAMESPACE)",
    )
    group.add_argument(
        "--tls-service",
        default="promethios-operator",
        help="the ingest Service: <svc>.<ns>.svc[.cluster.local] are the certificate's names",
    )
    group.add_argument(
        "--tls-extra-san",
        action="append",
        default=[],
        help="another DNS name or IP address for the certificate (repeatable)",
    )
    group.add_argument("--tls-cert-file", help="files mode: certificate chain (PEM)")
    group.add_argument("--tls-key-file", help="files mode: private key (PEM)")
    group.add_argument("--tls-ca-file", help="files mode: CA bundle published to the sidecars")
    group.add_argument(
        "--tls-check-seconds",
        type=float,
        default=300.0,
        help="interval of the certificate check (renewal, rotation by cert-manager)",
    )


def _tls_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TlsOptions:
    """The ``--tls-*`` flags, checked together; an error names the flag."""
    mode = TlsMode(args.tls_mode)
    files = {"--tls-cert-file": args.tls_cert_file, "--tls-key-file": args.tls_key_file,
             "--tls-ca-file": args.tls_ca_file}  # fmt: skip
    given = [flag for flag, value in files.items() if value]
    if mode != TlsMode.FILES and given:
        parser.error(f"{', '.join(given)} need --tls-mode=files (not {mode.value})")
    if mode == TlsMode.FILES and args.ingest and not (args.tls_cert_file and args.tls_key_file):
        parser.error("--tls-mode=files needs --tls-cert-file and --tls-key-file "
                     "(the in-process ingest API serves them)")  # fmt: skip
    scheme = urlsplit(args.ingest_url).scheme
    wanted = "http" if mode == TlsMode.OFF else "https"
    if scheme != wanted:
        parser.error(f"--ingest-url must start with {wanted}:// when --tls-mode={mode.value} "
                     f"(got {args.ingest_url!r})")  # fmt: skip
    return TlsOptions(
        mode=mode,
        secret_namespace=args.tls_secret_namespace,
        secret_name=args.tls_secret,
        service_name=args.tls_service,
        extra_sans=tuple(args.tls_extra_san),
        cert_file=args.tls_cert_file,
        key_file=args.tls_key_file,
        ca_file=args.tls_ca_file,
        check_seconds=args.tls_check_seconds,
    )


def _default_ingest_url(mode: str) -> str:
    """The chart's Service URL; http only when TLS is off."""
    if mode == TlsMode.OFF.value:
        return DEFAULT_INGEST_URL.replace("https://", "http://", 1)
    return DEFAULT_INGEST_URL


def parse_options(argv: Sequence[str]) -> OperatorOptions:
    """Parse the command line into :class:`OperatorOptions`."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    args.ingest_url = args.ingest_url or _default_ingest_url(args.tls_mode)
    external = urlsplit(args.external_ingest_url or "").hostname
    if external and urlsplit(args.external_ingest_url).scheme != urlsplit(args.ingest_url).scheme:
        parser.error("--external-ingest-url must use the scheme of --ingest-url "
                     f"(got {args.external_ingest_url!r})")  # fmt: skip
    args.tls_extra_san += [external] if external else []
    tls = _tls_options(args, parser)
    ports = [args.ingest_port, args.ingest_metrics_port] if args.ingest else []
    ports += [args.liveness_port] if args.liveness_port else []
    if len(set(ports)) != len(ports):
        parser.error(f"--ingest-port, --ingest-metrics-port and --liveness-port must differ "
                     f"(got {ports})")  # fmt: skip
    return OperatorOptions(
        namespaces=tuple(args.namespaces),
        kubeconfig=args.kubeconfig,
        ingest=args.ingest,
        ingest_port=args.ingest_port,
        ingest_metrics_port=args.ingest_metrics_port,
        liveness_port=args.liveness_port or None,
        sidecar_image=args.sidecar_image,
        ingest_url=args.ingest_url,
        ingest_peer=ingest_peer(args.ingest_pods, args.ingest_cidr, args.ingest_pod_port),
        standalone=args.standalone,
        resync_seconds=args.resync_seconds,
        verbose=args.verbose,
        allowed_sidecar_images=tuple(args.allowed_sidecar_images),
        alert_sink_allowed_cidrs=tuple(args.alert_sink_allow_cidr),
        tls=tls,
        external_ingest_url=args.external_ingest_url,
        dashboard_port=args.dashboard_port or None,
        election=_election(args, parser),
    )


def _image_pattern(text: str) -> str:
    """argparse type of --allowed-sidecar-image: the error names the pattern and the rule."""
    try:
        return parse_image_pattern(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
