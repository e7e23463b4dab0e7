"""Alert delivery to AlertSinks: a queue, deduplication and retries (bodies: :mod:`.alertformat`).

Delivery: alerts below a sink's ``minSeverity`` are skipped; repeats of one
agent+type+severity within the dedup window make one alert; each attempt has the sink's
timeout and goes through :class:`~.egress.GuardedClient`, which connects only where the
destination policy (:mod:`.destinations`) allows and never follows a redirect. A URL the
policy refuses as written is not attempted at all. Every other failure (no answer, any
status outside 2xx) is retried with exponential backoff (``backoff * 2**(retry-1)``,
capped; a ``Retry-After`` is honoured up to the cap) up to ``maxRetries``. Outcomes are
counted in ``promethios_alert_deliveries_total{sink_type,result}``: ``ok`` once per
delivered alert, ``retried`` per retry, ``refused`` once per alert the destination policy
stopped (as written, or for every address the name resolved to), ``failed`` once per other
alert given up on; a final failure raises a Warning Event on the GovernedAgent
(:func:`failure_message`).

What a failure tells the sink's author (whoever may create AlertSinks in the namespace,
who reads the Events there) must not make the delivery a port scanner. So:

- no error text reaches an Event or a log: not the status code, not the exception, not the
  address; only the sink, the number of attempts and one of two categories;
- "refused by destination policy" (with the field and the rule) is said only for a refusal
  decided from the URL as written and the operator's allowlist, before any network I/O: it
  is a function of what the author wrote and of operator configuration, and says nothing
  about what is at the destination;
- everything else is "failed": a closed, open or filtered port, a status code, a TLS
  error, a name that does not resolve and a name that resolves only to forbidden
  addresses (which would otherwise reveal internal DNS names) all read the same;
- every failure is retried alike (a 404 as a refused connection), so the number of attempts
  is always ``maxRetries + 1``; and the Event is not raised before the worst-case schedule
  (every attempt timing out, every backoff) has passed, so its time does not tell a
  refused connection from a filtered one. The one exception is a destination answering
  ``Retry-After``, which only an HTTP server the author can reach anyway can do.

The ``refused``/``failed`` split of the metric is for the operator (resolution-time
refusals count as ``refused`` there): metrics are operator-facing, not namespace-facing.

AlertSinks and their Secrets are read through :class:`CachingSinkResolver`: each sink (or
its absence) is remembered for a short TTL, so a burst of alerts reads it once and an
edited sink is seen within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from .alertformat import Alert, ResolvedSink, build_request, wanted
from .destinations import DestinationPolicy
from .egress import GuardedClient, refused_by_policy
from .metrics import IngestMetrics

log = logging.getLogger(__name__)


class SinkResolver(Protocol):
    """Reads AlertSinks (and their Secrets) by name in a namespace."""

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]: ...


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


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryFailure:
    """An alert given up on: attempts made, and whether the destination policy refused it.

    ``rule`` is set only for a refusal of the URL as written (no attempt was made); see the
    module docstring for why nothing else is told.
    """

    attempts: int
    refused: bool = False
    rule: str | None = None


FailureHook = Callable[[Alert, ResolvedSink, DeliveryFailure], Awaitable[None]]
DeliveredHook = Callable[[Alert, ResolvedSink], None]


def failure_message(sink: ResolvedSink, failure: DeliveryFailure) -> str:
    """The AlertDeliveryFailed Event's text: the sink, the attempts, a coarse category."""
    if failure.rule is not None:
        return (
            f"alert to {sink.type} sink {sink.name} refused by destination policy: "
            f"{sink.url_field} {failure.rule}; nothing was sent"
        )
    plural = "s" if failure.attempts != 1 else ""
    return f"alert to {sink.type} sink {sink.name} failed after {failure.attempts} attempt{plural}"


@dataclass(frozen=True)
class AttemptResult:
    """One delivery attempt: ``ok``, else whether the policy refused it; no error text."""

    ok: bool
    retry_after: float | None = None
    refused: bool = False


def retry_delay(backoff: float, retry: int, cap: float, retry_after: float | None = None) -> float:
    """Delay before retry number ``retry`` (1-based): ``backoff * 2**(retry-1)``, capped.

    A server-given ``Retry-After`` wins over the computed delay when longer (still capped).
    """
    delay = float(backoff * 2 ** min(retry - 1, 62))
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return min(delay, cap)


def worst_case_seconds(sink: ResolvedSink, backoff: float, cap: float) -> float:
    """How long a delivery to ``sink`` takes when every attempt times out."""
    waits = sum(retry_delay(backoff, retry, cap) for retry in range(1, sink.max_retries + 1))
    return (sink.max_retries + 1) * sink.timeout_seconds + waits


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
    alerts off the queue and new ones overflow it (counted ``dropped``). ``policy`` says
    where deliveries may connect; ``dns`` replaces the system resolver (tests).
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
        policy: DestinationPolicy | None = None,
        dns: AbstractResolver | None = None,
        on_delivered: DeliveredHook | None = None,
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
        self._on_delivered = on_delivered
        self._client = GuardedClient(policy or DestinationPolicy(), dns)
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)

    @property
    def policy(self) -> DestinationPolicy:
        """Where deliveries may connect."""
        return self._client.policy

    def submit(self, alert: Alert, sinks: tuple[str, ...], dedup: bool = True) -> None:
        """Queue an alert for the named sinks (never blocks a request).

        ``dedup=False`` for alerts already decided once (budget thresholds: once per window,
        recorded in status), which the type+severity window must not swallow.
        """
        if not sinks:
            return
        if dedup and not self._dedup.first(alert, self._clock()):
            self._metrics.alert_deliveries.labels("any", "deduplicated").inc()
            return
        try:
            self._queue.put_nowait((alert, sinks))
        except asyncio.QueueFull:
            if dedup:
                self._dedup.forget(alert)  # a dropped alert must not silence the next one
            self._metrics.alert_deliveries.labels("any", "dropped").inc()

    async def run(self) -> None:
        """Worker loop: resolve sinks, deliver to each concurrently."""
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
            await self._client.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def idle(self) -> None:
        """Wait until the queue is drained and deliveries finished (tests)."""
        while not self._queue.empty() or self._tasks:  # noqa: ASYNC110 - test helper, polling is fine
            await asyncio.sleep(0.01)

    async def _deliver(self, sink: ResolvedSink, alert: Alert) -> None:
        url, headers, body = build_request(sink, alert, self._clock())
        rule = self.policy.url_refusal(url)
        if rule is not None:
            await self._give_up(sink, alert, DeliveryFailure(0, refused=True, rule=rule))
            return
        target = yarl.URL(url)
        loop = asyncio.get_running_loop()
        spent = 0.0  # attempts as measured, backoffs as asked for (so a fake sleep counts)
        result = AttemptResult(False)
        for attempt in range(sink.max_retries + 1):
            if attempt:
                self._metrics.alert_deliveries.labels(sink.type, "retried").inc()
                delay = retry_delay(self._backoff, attempt, self._backoff_cap, result.retry_after)
                await self._sleep(delay)
                spent += delay
                _, headers, body = build_request(sink, alert, self._clock())  # signed afresh
            started = loop.time()
            result = await self._attempt(target, headers, body, sink.timeout_seconds)
            spent += loop.time() - started
            if result.ok:
                self._metrics.alert_deliveries.labels(sink.type, "ok").inc()
                if self._on_delivered is not None:
                    self._on_delivered(alert, sink)
                return
        remaining = worst_case_seconds(sink, self._backoff, self._backoff_cap) - spent
        if remaining > 0:  # fail no sooner than the worst case: see the module docstring
            await self._sleep(remaining)
        await self._give_up(sink, alert, DeliveryFailure(sink.max_retries + 1, result.refused))

    async def _give_up(self, sink: ResolvedSink, alert: Alert, failure: DeliveryFailure) -> None:
        self._metrics.alert_deliveries.labels(
            sink.type, "refused" if failure.refused else "failed"
        ).inc()
        log.warning("%s (agent %s)", failure_message(sink, failure), alert.agent_id)
        if self._on_failure is not None:
            with contextlib.suppress(Exception):
                await self._on_failure(alert, sink, failure)

    async def _attempt(
        self, url: yarl.URL, headers: dict[str, str], body: bytes, seconds: float
    ) -> AttemptResult:
        """One POST; what went wrong is deliberately not kept (see the module docstring)."""
        try:
            answer = await self._client.post(url, body, headers, seconds)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            return AttemptResult(False, refused=refused_by_policy(error))
        if 200 <= answer.status < 300:
            return AttemptResult(True)
        return AttemptResult(False, parse_retry_after(answer.retry_after))
