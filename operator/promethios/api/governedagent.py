"""The ``GovernedAgent`` custom resource: an AI agent deployed under governance.

The operator turns one GovernedAgent into a Secret (the agent's ingest API key),
a ConfigMap (the sidecar's configuration), a Deployment (agent + governance
sidecar) and a Service. The ingest API writes heartbeat and governance data
back into ``status``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from .agentstatus import GovernedAgentStatus
from .common import (
    RESERVED_PORTS,
    GovernanceMode,
    LocalObjectReference,
    Model,
    ProviderType,
    SecretKeyReference,
    api_config,
)
from .egress import EgressMode
from .enforcement import BreachAction
from .resource import CustomResourceInfo, PrinterColumn
from .rollout import RuntimeRolloutSpec

#: A GovernedAgent's name must be a DNS-1035 label: its Service carries the same name.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 63
NAME_RULE = (
    f"metadata.name must be a DNS-1035 label (at most {NAME_MAX} characters: lowercase "
    "letters, digits and '-', starting with a letter, ending with a letter or digit), "
    "because the agent's Service takes the same name"
)


Quantity = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|[KMGTPE]i?|[mun])?$",
        description="A resource quantity, e.g. 250m, 1 or 512Mi (a string).",
    ),
]
LabelValue = Annotated[str, Field(max_length=63, description="The label's value.")]
AnnotationValue = Annotated[str, Field(description="The annotation's value.")]
Argument = Annotated[str, Field(description="One argument.")]
ModelName = Annotated[str, Field(min_length=1, max_length=256, description="A model name.")]


class EnvVar(Model):
    """An environment variable for the agent container (literal value only)."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        description="Variable name; names the operator sets itself are dropped.",
    )
    value: str = Field("", max_length=32768, description="Literal value.")


class ResourceRequirements(Model):
    """CPU and memory requests and limits, as in a container spec."""

    requests: dict[str, Quantity] | None = Field(None, description="Minimum resources.")
    limits: dict[str, Quantity] | None = Field(None, description="Maximum resources.")


class Toleration(Model):
    """A toleration for the agent's pods, as in a pod spec."""

    key: str | None = Field(None, max_length=316, description="Taint key; empty with Exists: all.")
    operator: str = Field(
        "Equal", pattern=r"^(Exists|Equal)$", description="Exists or Equal (default)."
    )
    value: str | None = Field(None, max_length=63, description="Taint value (with Equal).")
    effect: str | None = Field(
        None,
        pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$",
        description="Taint effect to tolerate; empty: all effects.",
    )
    toleration_seconds: int | None = Field(
        None, description="With NoExecute: how long the pod stays bound after the taint."
    )


class ModelProvider(Model):
    """The model provider the agent calls through the sidecar's proxy."""

    model_config = api_config(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'custom' || has(self.baseUrl)",
                    "message": "baseUrl is required when type is custom",
                    "fieldPath": ".baseUrl",
                    "reason": "FieldValueRequired",
                },
            ]
        }
    )

    type: ProviderType = Field(description="openai, anthropic or custom (OpenAI-compatible).")
    base_url: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="Provider base URL; defaults to the provider's public API.",
    )
    credentials_secret_ref: SecretKeyReference | None = Field(
        None,
        description="Secret holding the provider credential; mounted into the sidecar only.",
    )
    allowed_models: list[ModelName] = Field(
        default_factory=list,
        max_length=64,
        description="Models the agent may call; empty allows any the policy allows.",
    )


class Governance(Model):
    """How the agent is governed: policy, mode, thresholds and breach action."""

    policy_ref: LocalObjectReference = Field(description="The GovernancePolicy to enforce.")
    mode: GovernanceMode = Field(GovernanceMode.ENFORCE, description="enforce or audit.")
    trust_threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="Trust score below which the agent is non-compliant."
    )
    heartbeat_interval_seconds: int = Field(
        15,
        ge=1,
        le=300,
        description=(
            "Seconds between the sidecar's heartbeats (with the default 3 missed beats, a "
            "silent agent shows stale within a minute)."
        ),
    )
    missed_heartbeats_before_stale: int = Field(
        3, ge=1, le=100, description="Missed heartbeats after which the agent is stale."
    )
    on_breach: BreachAction = Field(
        BreachAction.ALERT, description="Alert, Suspend or Quarantine on a policy breach."
    )
    acknowledged_breach: int = Field(
        0,
        ge=0,
        description=(
            "Releases a Suspend or Quarantine: set it to status.enforcement.breach "
            "to restore the agent."
        ),
    )
    egress: EgressMode = Field(
        EgressMode.OPEN,
        description=(
            "Open: governance runs as a sidecar and the pod's traffic is not restricted. "
            "Locked: governance runs in a per-agent gateway and the pod may reach only DNS, "
            "the gateway and the policy's spec.egress.allow (needs an enforcing "
            "NetworkPolicy implementation)."
        ),
    )


class ApiKey(Model):
    """The per-agent ingest API key the operator generates."""

    rotation: int = Field(0, ge=0, description="Raise to issue a new key; never lower it.")
    grace_period_seconds: int = Field(
        600, ge=0, le=86400, description="How long the previous key stays valid after rotation."
    )


class SidecarSettings(Model):
    """Overrides for the injected governance sidecar."""

    image: str | None = Field(
        None, min_length=1, max_length=1024, description="Sidecar image (default: the operator's)."
    )
    resources: ResourceRequirements | None = Field(None, description="Sidecar resources.")
    drain_seconds: int = Field(
        20,
        ge=0,
        le=600,
        description=(
            "On stop, how long the sidecar keeps delivering spooled violations (the pod's "
            "termination grace period grows by this much)."
        ),
    )


class GovernedAgentSpec(RuntimeRolloutSpec):
    """Desired state of a GovernedAgent."""

    model_config = api_config(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!(self.port in {list(RESERVED_PORTS)})",
                    "message": "port 15001 and 15090 are the governance sidecar's",
                    "fieldPath": ".port",
                    "reason": "FieldValueInvalid",
                },
            ]
        }
    )

    image: str = Field(min_length=1, max_length=1024, description="The agent's container image.")
    image_pull_policy: str | None = Field(
        None, pattern=r"^(Always|IfNotPresent|Never)$", description="Always, IfNotPresent, Never."
    )
    command: list[Argument] | None = Field(None, max_length=64, description="Entrypoint override.")
    args: list[Argument] | None = Field(None, max_length=256, description="Arguments override.")
    env: list[EnvVar] = Field(default_factory=list, max_length=128, description="Agent env vars.")
    port: int = Field(
        8080, ge=1, le=65535, description="Port the agent serves on (not 15001 or 15090)."
    )
    replicas: int | None = Field(
        None, ge=0, le=1000, description="Pod count; omit to let an autoscaler own it."
    )
    resources: ResourceRequirements | None = Field(None, description="Agent resources.")
    service_account_name: str | None = Field(
        None, max_length=253, description="ServiceAccount for the agent pod."
    )
    automount_service_account_token: bool = Field(
        False, description="Mount a service-account token into the agent pod (off by default)."
    )
    pod_labels: dict[str, LabelValue] = Field(default_factory=dict, description="Extra pod labels.")
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, description="Node labels the agent's pods must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the agent's pods tolerate."
    )
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, description="Extra pod annotations."
    )
    model_provider: ModelProvider = Field(description="Model provider behind the sidecar.")

    @field_validator("port")
    @classmethod
    def _not_a_sidecar_port(cls, port: int) -> int:
        if port in RESERVED_PORTS:
            raise ValueError("port 15001 and 15090 are the governance sidecar's")
        return port

    governance: Governance = Field(description="Governance settings.")
    alert_sinks: list[LocalObjectReference] = Field(
        default_factory=list, max_length=16, description="AlertSinks that receive violations."
    )
    suspend: bool = Field(False, description="Scale to zero and keep everything else.")
    api_key: ApiKey = Field(default_factory=ApiKey, description="Ingest API key rotation.")
    sidecar: SidecarSettings = Field(default_factory=SidecarSettings, description="Sidecar.")


"""A violation id's replay marker (see :func:`promethios.ingest.aggregate.violation_key`)."""


GOVERNED_AGENT = CustomResourceInfo(
    kind="GovernedAgent",
    plural="governedagents",
    singular="governedagent",
    short_names=("ga",),
    spec_model=GovernedAgentSpec,
    status_model=GovernedAgentStatus,
    description="An AI agent deployed with a governance sidecar that enforces a policy.",
    root_validations=(
        {
            "rule": (
                f"self.metadata.name.size() <= {NAME_MAX} && "
                f"self.metadata.name.matches('{NAME_PATTERN}')"
            ),
            "message": NAME_RULE,
            "reason": "FieldValueInvalid",
        },
    ),
    printer_columns=(
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Trust", "string", ".status.governance.trustScoreDisplay"),
        PrinterColumn("Violations", "integer", ".status.governance.violations.total"),
        PrinterColumn("Budget", "string", ".status.usage.summary"),
        PrinterColumn("Heartbeat", "date", ".status.heartbeat.lastHeartbeat"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
        PrinterColumn("Mode", "string", ".spec.governance.mode", priority=1),
        PrinterColumn("Policy", "string", ".spec.governance.policyRef.name", priority=1),
        PrinterColumn("Egress", "string", ".status.egress.mode", priority=1),
    ),
)
