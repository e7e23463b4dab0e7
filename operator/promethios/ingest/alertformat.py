"""Alert bodies for each AlertSink type (pure): what a violation looks like in a sink.

Formats (bodies are compact JSON, UTF-8):
- ``webhook``: ``{"kind": "PolicyViolation", "agent": {...}, "violation": {...}, ...}`` with
  header ``X-Promethios-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
  when the sink has a ``signingSecretRef``. The timestamp is signed with the body, so a
  captured delivery cannot be replayed later: receivers check it with
  :func:`verify_signature` (the README shows a copy to paste), which rejects timestamps
  more than 5 minutes from now; each attempt is signed afresh;
- ``slack``: an incoming-webhook message ``{"text": ..., "blocks": [...]}``. Every field
  goes through :func:`slack_escape` (``&``, ``<``, ``>`` as Slack's formatting rules require),
  so agent-written text cannot mention ``<!channel>``, ``<@U123>`` or disguise a link
  ``<https://evil|click>``; the text objects are ``verbatim`` (no automatic parsing of bare
  mentions or channel names) and links are not unfurled;
- ``pagerduty``: Events API v2 ``{"routing_key", "event_action": "trigger", "dedup_key",
  "payload": {"summary", "source", "severity", "custom_details"}}`` with severity mapped
  critical→critical, high→error, medium→warning, low→info. PagerDuty shows the summary as
  plain text; it is one line (control characters become spaces), so a description cannot
  forge further lines.

The violation's ``context`` is never sent (it may hold the very data that was blocked).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from ..api.alertsink import PAGERDUTY_EVENTS_URL
from ..api.common import Severity, severity_rank
from ..api.metadata import INGEST_FIELD_MANAGER

SIGNATURE_HEADER = "X-Promethios-Signature"
BUDGET_KIND = "BudgetThreshold"
PAGERDUTY_SEVERITY: dict[str, str] = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
}
MAX_DESCRIPTION = 500
SIGNATURE_TOLERANCE_SECONDS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


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
    kind: str = "PolicyViolation"
    """``PolicyViolation``, or ``BudgetThreshold`` (then ``budget`` says which and how far)."""
    budget: tuple[tuple[str, Any], ...] = ()
    """A budget alert's figures (name, scope, window, threshold, used, limit, ...)."""

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
    url_field: str = "spec.url"
    """Where the URL came from (``spec.url`` or ``spec.urlSecretRef``), for messages."""


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def one_line(text: str) -> str:
    """``text`` with every run of control characters (newlines included) made one space."""
    return _CONTROL.sub(" ", text)


def summary_line(alert: Alert) -> str:
    """One-line human summary (plain text: escape it for the format it goes into)."""
    if alert.kind == BUDGET_KIND:
        return one_line(f"[{alert.severity.upper()}] {alert.description[:MAX_DESCRIPTION]}")
    return one_line(
        f"[{alert.severity.upper()}] {alert.type} violation by {alert.agent_id}: "
        f"{alert.description[:MAX_DESCRIPTION]}"
    ).rstrip(": ")


def webhook_body(alert: Alert) -> bytes:
    """The generic webhook JSON."""
    if alert.kind == BUDGET_KIND:
        return _dumps(
            {
                "kind": alert.kind,
                "agent": {
                    "namespace": alert.namespace,
                    "name": alert.name,
                    "agentId": alert.agent_id,
                },
                "budget": dict(alert.budget),
                "alert": {
                    "id": alert.violation_id,
                    "type": alert.type,
                    "severity": alert.severity,
                    "description": alert.description[:MAX_DESCRIPTION],
                    "time": alert.time,
                },
            }
        )
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


def sign(body: bytes, secret: bytes, timestamp: int) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>``."""
    signed = str(timestamp).encode() + b"." + body
    return f"t={timestamp},v1={hmac.new(secret, signed, hashlib.sha256).hexdigest()}"


def verify_signature(
    body: bytes,
    secret: bytes,
    header: str,
    now: float,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Receiver-side check of ``X-Promethios-Signature`` (constant-time comparison).

    True only if the header's timestamp is within ``tolerance`` seconds of ``now`` (either
    way) and one of its ``v1`` signatures is the HMAC of ``"<t>.<body>"`` under ``secret``.
    A receiver should also drop repeats of a ``violation.id`` it has seen within the
    tolerance.
    """
    fields = [item.partition("=") for item in header.split(",")]
    stamps = [value.strip() for key, _, value in fields if key.strip() == "t"]
    signatures = [value.strip() for key, _, value in fields if key.strip() == "v1"]
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()):
        return False
    if len(stamps[0]) > 12 or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = sign(body, secret, int(stamps[0])).partition(",v1=")[2].encode()
    matches = [hmac.compare_digest(expected, given.encode()) for given in signatures]
    return any(matches)


def slack_escape(text: str) -> str:
    """Text made inert in Slack mrkdwn: ``&``, ``<`` and ``>`` as entities (Slack's rule)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def slack_body(alert: Alert) -> bytes:
    """A Slack incoming-webhook message; every agent-controlled field escaped."""
    text = slack_escape(summary_line(alert))
    fields = [
        _mrkdwn(f"*Agent*\n{slack_escape(alert.agent_id)}"),
        _mrkdwn(f"*Severity*\n{slack_escape(one_line(alert.severity))}"),
        _mrkdwn(f"*Type*\n{slack_escape(one_line(alert.type))}"),
        _mrkdwn(f"*Trust*\n{alert.trust_score:.3f}"),
    ]
    return _dumps(
        {
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": _title(alert)}},
                {"type": "section", "text": _mrkdwn(text)},
                {"type": "section", "fields": fields},
            ],
        }
    )


def _dedup_key(alert: Alert) -> str:
    """One PagerDuty incident per violation type and severity, or per budget alert."""
    return alert.violation_id if alert.kind == BUDGET_KIND else f"{alert.type}/{alert.severity}"


def _title(alert: Alert) -> str:
    return "Budget threshold" if alert.kind == BUDGET_KIND else "Policy violation"


def pagerduty_body(alert: Alert, routing_key: str) -> bytes:
    """A PagerDuty Events API v2 trigger."""
    return _dumps(
        {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": f"promethios/{alert.agent_id}/{_dedup_key(alert)}",
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


def build_request(
    sink: ResolvedSink, alert: Alert, now: float
) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body for delivering ``alert`` to ``sink`` (signed at ``now``)."""
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
        headers[SIGNATURE_HEADER] = sign(body, sink.signing_secret, int(now))
    return sink.url, headers, body


def wanted(sink: ResolvedSink, alert: Alert) -> bool:
    """Whether the alert meets the sink's minimum severity."""
    try:
        return severity_rank(alert.severity) >= severity_rank(sink.min_severity)
    except ValueError:
        return False
