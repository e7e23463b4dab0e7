"""Alert bodies for each AlertSink type (pure): what a violation looks like in a sink.

Formats (bodies are compact JSON, UTF-8):
- ``webhook``: ``{"kind": "PolicyViolation", "agent": {...}, "violation": {...}, ...}`` with
  header ``X-Promethios-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` when the sink
  has a ``signingSecretRef`` (verify with :func:`verify_signature`);
- ``slack``: an incoming-webhook message ``{"text": ..., "blocks": [...]}``;
- ``pagerduty``: Events API v2 ``{"routing_key", "event_action": "trigger", "dedup_key",
  "payload": {"summary", "source", "severity", "custom_details"}}`` with severity mapped
  critical→critical, high→error, medium→warning, low→info.

The violation's ``context`` is never sent (it may hold the very data that was blocked).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from ..api.alertsink import PAGERDUTY_EVENTS_URL
from ..api.common import Severity, severity_rank
from ..api.metadata import INGEST_FIELD_MANAGER

SIGNATURE_HEADER = "X-Promethios-Signature"
PAGERDUTY_SEVERITY: dict[str, str] = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
}
MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class Alert:
    """One violation worth telling people about (no context, by design)."""

    namespace: str
    name: str
    violation_id: str
    type: str
    severity: str
    description: str
    time: str
    trust_score: float
    enforcement: str = "None"

    @property
    def agent_id(self) -> str:
        """``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ResolvedSink:
    """An AlertSink with its Secret references resolved (held in memory only)."""

    name: str
    type: str
    url: str
    min_severity: str = "high"
    timeout_seconds: float = 5.0
    max_retries: int = 5
    signing_secret: bytes | None = None
    routing_key: str | None = None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def summary_line(alert: Alert) -> str:
    """One-line human summary."""
    return (
        f"[{alert.severity.upper()}] {alert.type} violation by {alert.agent_id}: "
        f"{alert.description[:MAX_DESCRIPTION]}"
    ).rstrip(": ")


def webhook_body(alert: Alert) -> bytes:
    """The generic webhook JSON."""
    return _dumps(
        {
            "kind": "PolicyViolation",
            "agent": {"namespace": alert.namespace, "name": alert.name, "agentId": alert.agent_id},
            "violation": {
                "id": alert.violation_id,
                "type": alert.type,
                "severity": alert.severity,
                "description": alert.description[:MAX_DESCRIPTION],
                "time": alert.time,
            },
            "trustScore": alert.trust_score,
            "enforcement": alert.enforcement,
        }
    )


def sign(body: bytes, secret: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: bytes, header: str) -> bool:
    """Receiver-side check of ``X-Promethios-Signature`` (constant time)."""
    return hmac.compare_digest(sign(body, secret), header)


def slack_body(alert: Alert) -> bytes:
    """A Slack incoming-webhook message."""
    text = summary_line(alert)
    fields = [
        {"type": "mrkdwn", "text": f"*Agent*\n{alert.agent_id}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
        {"type": "mrkdwn", "text": f"*Type*\n{alert.type}"},
        {"type": "mrkdwn", "text": f"*Trust*\n{alert.trust_score:.3f}"},
    ]
    return _dumps(
        {
            "text": text,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Policy violation"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "section", "fields": fields},
            ],
        }
    )


def pagerduty_body(alert: Alert, routing_key: str) -> bytes:
    """A PagerDuty Events API v2 trigger."""
    return _dumps(
        {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": f"promethios/{alert.agent_id}/{alert.type}/{alert.severity}",
            "payload": {
                "summary": summary_line(alert)[:1024],
                "source": alert.agent_id,
                "severity": PAGERDUTY_SEVERITY.get(alert.severity, "warning"),
                "timestamp": alert.time,
                "component": alert.name,
                "group": alert.namespace,
                "class": alert.type,
                "custom_details": {
                    "violationId": alert.violation_id,
                    "description": alert.description[:MAX_DESCRIPTION],
                    "trustScore": alert.trust_score,
                    "enforcement": alert.enforcement,
                },
            },
        }
    )


def build_request(sink: ResolvedSink, alert: Alert) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body for delivering ``alert`` to ``sink``."""
    headers = {"Content-Type": "application/json", "User-Agent": INGEST_FIELD_MANAGER}
    if sink.type == "slack":
        return sink.url, headers, slack_body(alert)
    if sink.type == "pagerduty":
        return (
            sink.url or PAGERDUTY_EVENTS_URL,
            headers,
            pagerduty_body(alert, sink.routing_key or ""),
        )
    body = webhook_body(alert)
    if sink.signing_secret:
        headers[SIGNATURE_HEADER] = sign(body, sink.signing_secret)
    return sink.url, headers, body


def wanted(sink: ResolvedSink, alert: Alert) -> bool:
    """Whether the alert meets the sink's minimum severity."""
    try:
        return severity_rank(alert.severity) >= severity_rank(sink.min_severity)
    except ValueError:
        return False
