"""Alert delivery to AlertSinks: pure formatting plus an async delivery queue.

Formats (bodies are compact JSON, UTF-8):
- ``webhook``: ``{"kind": "PolicyViolation", "agent": {...}, "violation": {...}, ...}`` with
  header ``X-Promethios-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` when the sink
  has a ``signingSecretRef`` (verify with :func:`verify_signature`);
- ``slack``: an incoming-webhook message ``{"text": ..., "blocks": [...]}``;
- ``pagerduty``: Events API v2 ``{"routing_key", "event_action": "trigger", "dedup_key",
  "payload": {"summary", "source", "severity", "custom_details"}}`` with severity mapped
  critical→critical, high→error, medium→warning, low→info.

The violation's ``context`` is never sent (it may hold the very data that was blocked).
Delivery: alerts below a sink's ``minSeverity`` are skipped; repeats of one
agent+type+severity within the dedup window make one alert; each attempt has the sink's
timeout. Transient failures (connection errors, timeouts, 5xx, 408, 429) retry with
exponential backoff (``backoff * 2**(retry-1)``, capped; a 429's ``Retry-After`` is
honoured up to the cap) up to ``maxRetries``; any other answer outside 2xx is permanent
and not retried. Outcomes are counted in
``promethios_alert_deliveries_total{sink_type,result}`` (``ok`` once per delivered alert,
``retried`` per retry, ``failed`` once per alert given up on) and a final failure raises a
Warning Event on the GovernedAgent.

AlertSinks and their Secrets are read through :class:`CachingSinkResolver`: each sink (or
its absence) is remembered for a short TTL, so a burst of alerts reads it once and an
edited sink is seen within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ..api.alertsink import PAGERDUTY_EVENTS_URL
from ..api.common import severity_rank
from .metrics import IngestMetrics

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Promethios-Signature"
RETRYABLE_STATUS = frozenset({408, 429})
"""4xx answers worth retrying; every other 4xx is permanent."""
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
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


class SinkResolver(Protocol):
    """Reads AlertSinks (and their Secrets) by name in a namespace."""

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]: ...


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
    headers = {"Content-Type": "application/json", "User-Agent": "promethios-ingest"}
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


class Deduplicator:
    """One alert per agent+type+severity within ``window`` seconds (pure; clock passed)."""

    def __init__(self, window: float, max_keys: int = 10_000) -> None:
        self._window = window
        self._max = max_keys
        self._last: dict[tuple[str, str, str], float] = {}

    def first(self, alert: Alert, now: float) -> bool:
        """True if this alert should be sent (not a repeat within the window)."""
        key = (alert.agent_id, alert.type, alert.severity)
        last = self._last.get(key)
        if last is not None and now - last < self._window:
            return False
        if len(self._last) >= self._max:
            self._last = {k: t for k, t in self._last.items() if now - t < self._window}
        self._last[key] = now
        return True

    def forget(self, alert: Alert) -> None:
        """Undo :meth:`first` for an alert that was not queued after all."""
        self._last.pop((alert.agent_id, alert.type, alert.severity), None)


class CachingSinkResolver:
    """A :class:`SinkResolver` that remembers each sink (or its absence) for ``ttl`` seconds.

    Keyed by namespace and sink name, so agents sharing a sink share the entry. Failed
    reads are not cached (the next alert tries again). At most ``max_entries`` are kept;
    the oldest go first.
    """

    def __init__(
        self,
        inner: SinkResolver,
        clock: Callable[[], float],
        ttl: float = 30.0,
        max_entries: int = 4096,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, ResolvedSink | None]] = (
            OrderedDict()
        )

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        """The named sinks, from the cache where fresh, else read (once per burst)."""
        now = self._clock()
        missing = tuple(
            name for name in dict.fromkeys(names) if not self._fresh((namespace, name), now)
        )
        if missing:
            found = {sink.name: sink for sink in await self._inner.resolve(namespace, missing)}
            expiry = self._clock() + self._ttl
            for name in missing:
                self._entries.pop((namespace, name), None)
                self._entries[(namespace, name)] = (expiry, found.get(name))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        sinks = []
        for name in dict.fromkeys(names):
            entry = self._entries.get((namespace, name))
            if entry is not None and entry[1] is not None:
                sinks.append(entry[1])
        return sinks

    def invalidate(self, namespace: str | None = None, name: str | None = None) -> None:
        """Forget one sink, a namespace's sinks, or everything."""
        for key in list(self._entries):
            if (namespace is None or key[0] == namespace) and (name is None or key[1] == name):
                del self._entries[key]

    def _fresh(self, key: tuple[str, str], now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[0] > now


FailureHook = Callable[[Alert, ResolvedSink, str], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class AttemptResult:
    """One delivery attempt: ``ok``, else a short reason and whether a retry may help."""

    ok: bool
    reason: str = ""
    retryable: bool = True
    retry_after: float | None = None


def retry_delay(backoff: float, retry: int, cap: float, retry_after: float | None = None) -> float:
    """Delay before retry number ``retry`` (1-based): ``backoff * 2**(retry-1)``, capped.

    A server-given ``Retry-After`` wins over the computed delay when longer (still capped).
    """
    delay = float(backoff * 2 ** min(retry - 1, 62))
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return min(delay, cap)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form (dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class AlertDispatcher:
    """Queue of alerts, delivered by one background worker to the agent's sinks.

    ``sleep`` is the backoff wait (tests pass a fake); at most ``max_in_flight``
    deliveries (each with its retries) run at once, beyond which the worker stops taking
    alerts off the queue and new ones overflow it (counted ``dropped``).
    """

    def __init__(
        self,
        resolver: SinkResolver,
        metrics: IngestMetrics,
        clock: Callable[[], float],
        dedup_window: float = 300.0,
        backoff: float = 1.0,
        queue_size: int = 1000,
        on_failure: FailureHook | None = None,
        *,
        backoff_cap: float = 60.0,
        max_in_flight: int = 100,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._resolver = resolver
        self._metrics = metrics
        self._clock = clock
        self._dedup = Deduplicator(dedup_window)
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._queue: asyncio.Queue[tuple[Alert, tuple[str, ...]]] = asyncio.Queue(queue_size)
        self._on_failure = on_failure
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)

    def submit(self, alert: Alert, sinks: tuple[str, ...]) -> None:
        """Queue an alert for the named sinks (never blocks a request)."""
        if not sinks:
            return
        if not self._dedup.first(alert, self._clock()):
            self._metrics.alert_deliveries.labels("any", "deduplicated").inc()
            return
        try:
            self._queue.put_nowait((alert, sinks))
        except asyncio.QueueFull:
            self._dedup.forget(alert)  # a dropped alert must not silence the next one
            self._metrics.alert_deliveries.labels("any", "dropped").inc()

    async def run(self) -> None:
        """Worker loop: resolve sinks, deliver to each concurrently."""
        self._session = aiohttp.ClientSession()
        try:
            while True:
                alert, names = await self._queue.get()
                try:
                    sinks = await self._resolver.resolve(alert.namespace, names)
                except Exception as error:
                    log.warning("resolving alert sinks for %s failed: %s", alert.agent_id, error)
                    self._metrics.alert_deliveries.labels("any", "failed").inc()
                    continue
                for sink in sinks:
                    if wanted(sink, alert):
                        await self._slots.acquire()
                        task = asyncio.create_task(self._deliver(sink, alert))
                        self._tasks.add(task)
                        task.add_done_callback(self._done)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._session.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def idle(self) -> None:
        """Wait until the queue is drained and deliveries finished (tests)."""
        while not self._queue.empty() or self._tasks:  # noqa: ASYNC110 - test helper, polling is fine
            await asyncio.sleep(0.01)

    async def _deliver(self, sink: ResolvedSink, alert: Alert) -> None:
        url, headers, body = build_request(sink, alert)
        result = AttemptResult(False, "not attempted")
        for attempt in range(sink.max_retries + 1):
            if attempt:
                self._metrics.alert_deliveries.labels(sink.type, "retried").inc()
                await self._sleep(
                    retry_delay(self._backoff, attempt, self._backoff_cap, result.retry_after)
                )
            result = await self._attempt(url, headers, body, sink.timeout_seconds)
            if result.ok:
                self._metrics.alert_deliveries.labels(sink.type, "ok").inc()
                return
            if not result.retryable:
                break
        self._metrics.alert_deliveries.labels(sink.type, "failed").inc()
        log.warning("alert to sink %s for %s failed: %s", sink.name, alert.agent_id, result.reason)
        if self._on_failure is not None:
            with contextlib.suppress(Exception):
                await self._on_failure(alert, sink, result.reason)

    async def _attempt(
        self, url: str, headers: dict[str, str], body: bytes, seconds: float
    ) -> AttemptResult:
        """One POST (no URL in the reason: it may embed a token)."""
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as response:
                code = response.status
                if 200 <= code < 300:
                    return AttemptResult(True)
                retryable = code >= 500 or code in RETRYABLE_STATUS
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return AttemptResult(False, f"HTTP {code}", retryable, retry_after)
        except aiohttp.InvalidURL as error:  # the sink is misconfigured: retrying won't help
            return AttemptResult(False, type(error).__name__, retryable=False)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return AttemptResult(False, type(error).__name__)
