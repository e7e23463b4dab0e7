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
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

SIDECAR_PROXY_PORT, SIDECAR_METRICS_PORT = RESERVED_PORTS
MiB = 1 << 20


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
        description="PEM bundle of the CAs the ingest's certificate must chain to (https); "
        "unset: the system's trust store. Re-read when it changes.",
    )
    heartbeat_interval_seconds: int = Field(15, ge=1, le=300)
    metrics_interval_seconds: int = Field(60, ge=1, le=3600)


class SidecarLimits(Model):
    """Bounds on what the sidecar buffers and parses: its memory limit is small, and an
    OOM kill would restart it with empty rate windows and budget."""

    max_request_bytes: int = Field(
        8 * MiB, ge=64 * 1024, le=256 * MiB, description="Largest model-call body (413 beyond)."
    )
    max_report_bytes: int = Field(
        1 * MiB, ge=64 * 1024, le=64 * MiB, description="Largest report from the agent (413)."
    )
    max_json_nodes: int = Field(
        50_000, ge=1_000, le=10_000_000, description="Values and keys in one body (413 beyond)."
    )
    max_json_depth: int = Field(
        64, ge=8, le=512, description="Nesting of objects and arrays in one body (400 beyond)."
    )
    max_buffered_bytes: int = Field(
        24 * MiB,
        ge=64 * 1024,
        le=1024 * MiB,
        description="Request bodies held at once across concurrent calls; more calls wait.",
    )
    max_response_bytes: int = Field(
        16 * MiB,
        ge=64 * 1024,
        le=1024 * MiB,
        description="Largest whole answer, or streamed event, from the provider (502 beyond).",
    )
    agent_violations_per_minute: int = Field(
        600,
        ge=6,
        le=60_000,
        description="Violations the agent may report itself, per minute (429 beyond).",
    )


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
    limits: SidecarLimits = Field(default_factory=SidecarLimits)
    quarantined: bool = Field(
        False,
        description=(
            "The agent is quarantined: no model call is forwarded (they are still inspected "
            "and their violations reported), and the sidecar drops its provider connections. "
            "Applied live; the operator sets it and clears it on release."
        ),
    )
    drain_seconds: int = Field(
        20,
        ge=0,
        le=600,
        description="On SIGTERM, keep delivering spooled violations this long at most; "
        "the pod's terminationGracePeriodSeconds must leave room for it.",
    )
    termination_message_path: str = Field(
        DEFAULT_TERMINATION_MESSAGE_PATH,
        description="Where the sidecar leaves, on exit, a summary of undelivered violations.",
    )
