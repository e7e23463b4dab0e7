"""The ``AlertSink`` custom resource: where violations are delivered."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .common import Condition, Model, SecretKeyReference, Severity, api_config
from .resource import CustomResourceInfo, PrinterColumn

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class SinkType(StrEnum):
    """The delivery format."""

    WEBHOOK = "webhook"
    SLACK = "slack"
    PAGERDUTY = "pagerduty"


_RULES = [
    {
        "rule": "self.type == 'pagerduty' || has(self.url) != has(self.urlSecretRef)",
        "message": "exactly one of url or urlSecretRef is required for webhook and slack sinks",
        "fieldPath": ".url",
        "reason": "FieldValueRequired",
    },
    {
        "rule": "self.type != 'pagerduty' || has(self.routingKeySecretRef)",
        "message": "routingKeySecretRef is required when type is pagerduty",
        "fieldPath": ".routingKeySecretRef",
        "reason": "FieldValueRequired",
    },
    {
        "rule": "self.type == 'webhook' || !has(self.signingSecretRef)",
        "message": "signingSecretRef is only used by webhook sinks",
        "fieldPath": ".signingSecretRef",
        "reason": "FieldValueForbidden",
    },
]


class AlertSinkSpec(Model):
    """Desired state of an AlertSink."""

    model_config = api_config(json_schema_extra={"x-kubernetes-validations": _RULES})

    type: SinkType = Field(description="webhook, slack or pagerduty.")
    url: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="Endpoint URL (PagerDuty defaults to the Events API v2).",
    )
    url_secret_ref: SecretKeyReference | None = Field(
        None, description="Secret holding the URL, for URLs that embed a token (Slack)."
    )
    signing_secret_ref: SecretKeyReference | None = Field(
        None, description="Webhook only: HMAC-SHA256 key for X-Promethios-Signature."
    )
    routing_key_secret_ref: SecretKeyReference | None = Field(
        None, description="PagerDuty only: the integration routing key."
    )
    min_severity: Severity = Field(Severity.HIGH, description="Least severity delivered.")
    timeout_seconds: int = Field(5, ge=1, le=60, description="Per-attempt timeout.")
    max_retries: int = Field(5, ge=0, le=20, description="Retries with backoff after a failure.")


class AlertSinkStatus(Model):
    """Observed state of an AlertSink."""

    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current state, as Kubernetes API conventions define conditions.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    delivered: int = Field(0, ge=0, description="Alerts delivered.")
    failed: int = Field(0, ge=0, description="Alerts that failed after every retry.")


ALERT_SINK = CustomResourceInfo(
    kind="AlertSink",
    plural="alertsinks",
    singular="alertsink",
    short_names=("as",),
    spec_model=AlertSinkSpec,
    status_model=AlertSinkStatus,
    description="Where governance violations are delivered: webhook, Slack or PagerDuty.",
    printer_columns=(
        PrinterColumn("Type", "string", ".spec.type"),
        PrinterColumn("MinSeverity", "string", ".spec.minSeverity"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
    ),
)
