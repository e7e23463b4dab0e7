"""The ``AlertSink`` custom resource: where violations are delivered.

Also the operator-level vocabulary of where deliveries may go: :func:`allowed_cidr` reads
one ``--alert-sink-allow-cidr`` value (both ``promethios operator`` and ``promethios
ingest`` take it).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum

from pydantic import Field, JsonValue

from .common import Conditions, Model, SecretKeyReference, Severity, api_config
from .resource import CustomResourceInfo, PrinterColumn

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NEVER_HOSTS = (
    "169.254.169.254",
    "169.254.170.2",
    "fd00:ec2::254",
    "100.100.100.200",
    "metadata.google.internal",
    "metadata.goog",
)


def allowed_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One allowlist entry: a CIDR (``10.96.0.0/12``) or a single address (``127.0.0.1``).

    Raises ValueError naming the value when it is not a network, or has host bits set
    (``10.0.0.1/8`` is almost certainly a typo for ``10.0.0.0/8`` or ``10.0.0.1/32``).
    IPv4-mapped IPv6 networks are read as the IPv4 networks they are.
    """
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as error:
        raise ValueError(f"{text!r} is not a CIDR such as 10.96.0.0/12: {error}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


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


_URL_RULES: list[JsonValue] = [
    {
        "rule": "isURL(self) && url(self).getHostname() != ''",
        "message": "must be an absolute http(s) URL with a host",
        "reason": "FieldValueInvalid",
    },
    {
        # The canonical spellings only: the ingest API refuses every spelling and every
        # name resolving to these at delivery time; this is early, clear feedback.
        "rule": "!isURL(self) || !(url(self).getHostname() in "
        + repr(sorted(_NEVER_HOSTS)).replace('"', "'")
        + ")",
        "message": "must not point at a cloud metadata address",
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
        description=(
            "Endpoint URL (PagerDuty defaults to the Events API v2). https is required; "
            "plain http, loopback and private addresses only inside the operator's "
            "allowlist (--alert-sink-allow-cidr); cloud metadata, link-local, "
            "unspecified and multicast addresses never. The policy applies to every "
            "address the host resolves to; redirects are not followed. A refused URL "
            "gets an AlertDeliveryFailed Warning Event naming the field and the rule."
        ),
        json_schema_extra={"x-kubernetes-validations": _URL_RULES},
    )
    url_secret_ref: SecretKeyReference | None = Field(
        None, description="Secret holding the URL, for URLs that embed a token (Slack)."
    )
    signing_secret_ref: SecretKeyReference | None = Field(
        None,
        description=(
            "Webhook only: HMAC-SHA256 key for the X-Promethios-Signature header, "
            "t=<unix seconds>,v1=<hex HMAC-SHA256(key, '<t>.' + raw body)>. Receivers "
            "recompute v1 over the raw body, compare in constant time and reject a t more "
            "than 300 s from their clock (replays); see README 'Verifying webhook signatures'."
        ),
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
    conditions: Conditions
    delivered: int = Field(0, ge=0, description="Alerts delivered.")
    failed: int = Field(0, ge=0, description="Alerts that failed after every retry.")
    last_delivery_time: datetime | None = Field(None, description="When an alert last got through.")
    last_failure_time: datetime | None = Field(
        None, description="When an alert was last given up on."
    )
    last_error: str = Field(
        "",
        max_length=1024,
        description=(
            "The latest failure, as coarse as the AlertDeliveryFailed Event (attempts, or the "
            "destination rule that refused the URL as written): never an address or a reply."
        ),
    )


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
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Delivered", "integer", ".status.delivered"),
        PrinterColumn("Failed", "integer", ".status.failed"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
    ),
)
