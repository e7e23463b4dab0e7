"""The governance sidecar's configuration file, written by the operator into a ConfigMap.

The operator renders :class:`SidecarConfig` to JSON under the ConfigMap key
``config.json``; the sidecar reads it from the mounted file and re-reads it when
it changes. Secrets are never in this file: it only names the files where the
sidecar finds the ingest API key and the provider credential.
"""

from __future__ import annotations

from pydantic import Field

from .common import RESERVED_PORTS, GovernanceMode, Model, ProviderType
from .policy import GovernancePolicySpec

CONFIG_KEY = "config.json"
CONFIG_MOUNT = "/etc/promethios"
API_KEY_MOUNT = "/var/run/promethios/api-key"
PROVIDER_CREDENTIAL_MOUNT = "/var/run/promethios/provider"
SPOOL_MOUNT = "/var/lib/promethios/spool"

SIDECAR_PROXY_PORT, SIDECAR_METRICS_PORT = RESERVED_PORTS


class ProviderConfig(Model):
    """Where the sidecar forwards model calls, and with which credential file."""

    type: ProviderType
    base_url: str = Field(description="Upstream base URL, resolved from the provider's default.")
    credential_file: str | None = Field(None, description="File holding the provider credential.")
    allowed_models: list[str] = Field(default_factory=list)


class IngestConfig(Model):
    """Where and how the sidecar reports."""

    url: str = Field(description="Base URL of the ingest API.")
    api_key_file: str = Field(description="File holding the agent's ingest API key.")
    ca_file: str | None = Field(
        None,
        description="PEM bundle of the CAs the ingest API's certificate is verified against "
        "(https URLs); None means the system trust store.",
    )
    heartbeat_interval_seconds: int = Field(30, ge=1, le=300)
    metrics_interval_seconds: int = Field(60, ge=1, le=3600)


class SidecarConfig(Model):
    """Everything the sidecar needs; rendered by the operator, read by the sidecar."""

    agent_id: str = Field(description="<namespace>/<name> of the GovernedAgent.")
    governance_identity: str = Field(description="Stable identity of the GovernedAgent.")
    mode: GovernanceMode = GovernanceMode.ENFORCE
    policy_name: str = Field(description="Name of the GovernancePolicy the policy came from.")
    policy: GovernancePolicySpec = Field(default_factory=GovernancePolicySpec)
    provider: ProviderConfig
    ingest: IngestConfig
    listen_host: str = Field("127.0.0.1", description="Agent-facing listener (localhost only).")
    proxy_port: int = Field(SIDECAR_PROXY_PORT, ge=1, le=65535)
    metrics_port: int = Field(SIDECAR_METRICS_PORT, ge=1, le=65535)
    spool_dir: str = Field(SPOOL_MOUNT, description="Where undelivered violations are kept.")
    spool_max_entries: int = Field(10_000, ge=10, le=1_000_000)
