"""The governance sidecar's configuration (``config.json``) and the ConfigMap holding it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import __version__
from ..api.agent import Agent
from ..api.common import ProviderType
from ..api.metadata import ANNOTATION_CONFIG_HASH
from ..api.policy import GovernancePolicySpec
from ..api.rollout import Runtime
from ..api.sidecarconfig import (
    API_KEY_MOUNT,
    CONFIG_KEY,
    CONFIG_MOUNT,
    PROVIDER_CREDENTIAL_MOUNT,
    IngestConfig,
    ProviderConfig,
    SidecarConfig,
)
from .images import image_allowed, parse_image_pattern
from .meta import (
    ChildNames,
    Manifest,
    object_meta,
    stamp_applied_hash,
)

COMPONENT = "sidecar-config"
DEFAULT_SIDECAR_IMAGE = f"ghcr.io/promethios/promethios-operator:{__version__}"
#: Where the sidecars report when the operator is installed by the chart (in-process ingest).
DEFAULT_INGEST_URL = "https://promethios-operator.promethios-system.svc:8443"
#: Key of the ingest API's CA bundle in the sidecar's ConfigMap, beside ``config.json``.
CA_BUNDLE_KEY = "ca.crt"
#: File names inside the sidecar's secret mounts (``items`` projects only these keys).
API_KEY_FILE = "apiKey"
PROVIDER_CREDENTIAL_FILE = "credential"

#: Upstream base URLs, in the form each provider's own SDK uses as its base URL: the
#: OpenAI SDK's default base includes ``/v1`` and appends ``/chat/completions``; the
#: Anthropic SDK's default is the bare host and appends ``/v1/messages``. The sidecar
#: forwards the path the agent's SDK sent below its local base URL onto this base.
PROVIDER_BASE_URLS: dict[str, str] = {
    ProviderType.OPENAI.value: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC.value: "https://api.anthropic.com",
}


@dataclass(frozen=True)
class IngestPeer:
    """Where the ingest API's pods run, for the egress a quarantine still allows."""

    namespace: str | None = None
    """Namespace of the ingest pods (with ``pod_labels``)."""
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels selecting the ingest pods in ``namespace``."""
    cidr: str | None = None
    """Or: the ingest's address range (an ingest outside the cluster)."""
    port: int = 8443
    """The ingest container's port (NetworkPolicies see pod ports, not Service ports)."""


@dataclass(frozen=True)
class BuildSettings:
    """Operator-wide inputs to the builders (from the command line, not from any spec)."""

    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    ingest_url: str = DEFAULT_INGEST_URL
    #: Server minor version ≥ 29: run the sidecar as a native sidecar (restartable init).
    native_sidecar: bool = True
    metrics_interval_seconds: int = 60
    #: Where the ingest runs; None: a quarantine denies all egress (violations then wait in
    #: the sidecar's spool until the release).
    ingest_peer: IngestPeer | None = None
    #: Patterns of the other sidecar images a ``spec.sidecar.image`` may name
    #: (:mod:`.images`); ``sidecar_image`` itself is always allowed.
    allowed_sidecar_images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for pattern in self.allowed_sidecar_images:
            parse_image_pattern(pattern)

    def sidecar_image_allowed(self, image: str) -> bool:
        """Whether the operator may run ``image`` as an agent's governance sidecar."""
        return image == self.sidecar_image or image_allowed(image, self.allowed_sidecar_images)

    #: PEM CAs the sidecars verify the ingest API's certificate against; None: no bundle
    #: is published (plain HTTP, or a certificate from a publicly trusted CA).
    ca_bundle: str | None = None
    #: Where the sidecars of ``runtime: External`` agents (outside the cluster) report;
    #: None: ``ingest_url``.
    external_ingest_url: str | None = None

    def ingest_url_for(self, agent: Agent) -> str:
        """The ingest API URL the agent's sidecar reports to (External agents: from outside)."""
        if agent.spec.runtime == Runtime.EXTERNAL and self.external_ingest_url:
            return self.external_ingest_url
        return self.ingest_url


def default_base_url(provider: str) -> str:
    """The provider's public API base URL; ``custom`` has none (its spec requires one)."""
    try:
        return PROVIDER_BASE_URLS[provider]
    except KeyError:
        raise ValueError(f"provider {provider!r} has no default base URL") from None


def build_sidecar_config(
    agent: Agent,
    policy_name: str,
    policy: GovernancePolicySpec,
    settings: BuildSettings,
    quarantined: bool = False,
) -> SidecarConfig:
    """Resolve policy, governance, provider and ingest settings into the sidecar's file."""
    provider = agent.spec.model_provider
    governance = agent.spec.governance
    credential_file = (
        f"{PROVIDER_CREDENTIAL_MOUNT}/{PROVIDER_CREDENTIAL_FILE}"
        if provider.credentials_secret_ref
        else None
    )
    return SidecarConfig(
        agent_id=agent.agent_id,
        governance_identity=agent.governance_identity,
        mode=governance.mode,
        policy_name=policy_name,
        policy=policy,
        provider=ProviderConfig(
            type=provider.type,
            base_url=provider.base_url or default_base_url(str(provider.type)),
            credential_file=credential_file,
            allowed_models=list(provider.allowed_models),
        ),
        drain_seconds=agent.spec.sidecar.drain_seconds,
        quarantined=quarantined,
        ingest=IngestConfig(
            url=settings.ingest_url_for(agent),
            api_key_file=f"{API_KEY_MOUNT}/{API_KEY_FILE}",
            ca_file=f"{CONFIG_MOUNT}/{CA_BUNDLE_KEY}" if settings.ca_bundle else None,
            heartbeat_interval_seconds=governance.heartbeat_interval_seconds,
            metrics_interval_seconds=settings.metrics_interval_seconds,
        ),
    )


def render_config(config: SidecarConfig) -> str:
    """config.json text: camelCase, key-sorted, so equal configs render byte-for-byte equal.

    The policy's ``egress`` is left out: NetworkPolicies enforce it, not the sidecar (and a
    sidecar older than the field, which refuses unknown fields, keeps reading the file).
    """
    data = config.model_dump(mode="json", by_alias=True)
    data["policy"].pop("egress", None)
    return json.dumps(data, sort_keys=True, indent=2)


def config_hash(rendered: str, ca_bundle: str | None = None) -> str:
    """Hash of config.json (and the CA bundle, if any); on the pod template it rolls the
    pods when either changes."""
    digest = hashlib.sha256(rendered.encode())
    if ca_bundle:
        digest.update(b"\0" + ca_bundle.encode())
    return digest.hexdigest()[:16]


def build_config_map(
    agent: Agent, config: SidecarConfig, ca_bundle: str | None = None
) -> tuple[Manifest, str]:
    """The ConfigMap with ``config.json`` (and ``ca.crt``: the ingest API's CA bundle),
    and the config hash for the pod template."""
    rendered = render_config(config)
    # The pod template carries the hash, so a change rolls the pods; a quarantine (and its
    # release) must not: the sidecar applies it live, and the pods stay (cut off).
    digest = config_hash(render_config(config.model_copy(update={"quarantined": False})), ca_bundle)
    data = {CONFIG_KEY: rendered}
    if ca_bundle:
        data[CA_BUNDLE_KEY] = ca_bundle
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            agent,
            ChildNames.of(agent.name).config_map,
            COMPONENT,
            annotations={ANNOTATION_CONFIG_HASH: digest},
        ),
        "data": data,
    }
    return stamp_applied_hash(manifest), digest
