"""Alert delivery against a local HTTP receiver: retries, backoff, give-up, dedup, filtering,
and the AlertSink cache. Backoff waits go through an injected sleep, so nothing really waits.

The receiver listens on 127.0.0.1 over plain http, which the destination policy allows only
inside the operator's allowlist: these tests allowlist 127.0.0.1/32 (:data:`RECEIVERS`), as
an operator would allowlist an in-cluster receiver. What the policy refuses is tested in
tests/adversarial/test_alert_sinks.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from ingest_fakes import AGENT, Clock, MemoryEvents, MemorySink, agent_config

from promethios.api.wire import PolicyViolation
from promethios.ingest.aggregator import Aggregator
from promethios.ingest.alertformat import Alert, ResolvedSink
from promethios.ingest.alerts import (
    AlertDispatcher,
    CachingSinkResolver,
    DeliveryFailure,
    parse_retry_after,
    retry_delay,
    worst_case_seconds,
)
from promethios.ingest.destinations import NOT_HTTP, DestinationPolicy
from promethios.ingest.metrics import IngestMetrics
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings

ALERT = Alert("team-a", "support-bot", "v1", "pii", "high", "email", "2024-01-01T00:00:00Z", 0.8)
RECEIVER_NET = ip_network("127.0.0.1/32")
RECEIVERS = DestinationPolicy((RECEIVER_NET,))


class Receiver:
    """Answers the scripted status codes in order, then 200; records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.delays: list[float] = []
        self.requests: list[tuple[str, bytes]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, await request.read()))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delays:
                await asyncio.sleep(self.delays.pop(0))
        finally:
            self.in_flight -= 1
        code, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=code, headers=headers)

    def fail(self, *codes: int, **headers: str) -> None:
        self.script.extend((code, dict(headers)) for code in codes)

    def count(self, path: str = "/hook") -> int:
        return sum(1 for p, _ in self.requests if p == path)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", hook.handle)
    server = TestServer(app)
    await server.start_server()
    yield hook, str(server.make_url("/"))
    await server.close()


class Resolver:
    """A SinkResolver over a dict, counting reads per sink."""

    def __init__(self, *sinks: ResolvedSink) -> None:
        self.sinks = {sink.name: sink for sink in sinks}
        self.reads: list[tuple[str, tuple[str, ...]]] = []
        self.error: Exception | None = None

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        self.reads.append((namespace, names))
        if self.error is not None:
            raise self.error
        return [self.sinks[name] for name in names if name in self.sinks]


class Sleeps:
    """An injected sleep: records the delays, yields once, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def sink(base: str, name: str = "hook", **overrides: Any) -> ResolvedSink:
    values: dict[str, Any] = {"min_severity": "high", "timeout_seconds": 2.0, "max_retries": 3}
    values.update(overrides)
    return ResolvedSink(name, "webhook", base + name, **values)


def count(metrics: IngestMetrics, result: str, sink_type: str = "webhook") -> float:
    value = metrics.registry.get_sample_value(
        "promethios_alert_deliveries_total", {"sink_type": sink_type, "result": result}
    )
    return value or 0.0


Failure = tuple[Alert, ResolvedSink, DeliveryFailure]


@contextlib.asynccontextmanager
async def dispatching(
    resolver: Resolver,
    clock: Clock,
    sleeps: Sleeps | None = None,
    failures: list[Failure] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[AlertDispatcher, IngestMetrics]]:
    metrics = IngestMetrics(Aggregator(), clock)

    async def on_failure(alert: Alert, resolved: ResolvedSink, failure: DeliveryFailure) -> None:
        if failures is not None:
            failures.append((alert, resolved, failure))

    dispatcher = AlertDispatcher(
        resolver,
        metrics,
        clock,
        on_failure=on_failure,
        sleep=sleeps or Sleeps(),
        policy=RECEIVERS,
        **options,
    )
    worker = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher, metrics
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def delivered(dispatcher: AlertDispatcher) -> None:
    await asyncio.wait_for(dispatcher.idle(), 10)


# -- retry and backoff ------------------------------------------------------------------


async def test_retries_with_exponential_backoff_then_counts_one_delivery(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    hook.fail(500, 503, 502)
    sleeps, failures = Sleeps(), list[Failure]()
    async with dispatching(
        Resolver(sink(base, max_retries=5)), clock, sleeps, failures, backoff=1.0
    ) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 4  # three failures, then the delivery
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert (count(metrics, "ok"), count(metrics, "retried"), count(metrics, "failed")) == (1, 3, 0)
    assert failures == []


async def test_gives_up_after_max_retries(receiver: tuple[Receiver, str], clock: Clock) -> None:
    hook, base = receiver
    hook.fail(*[500] * 10)
    sleeps, failures = Sleeps(), list[Failure]()
    async with dispatching(
        Resolver(sink(base, max_retries=3)), clock, sleeps, failures, backoff=0.5
    ) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 4  # the first attempt and three retries, no more
    assert sleeps.delays[:3] == [0.5, 1.0, 2.0]
    # then it waits out the worst case (4 timeouts of 2 s and the backoffs) before giving up
    worst = worst_case_seconds(sink(base, max_retries=3), 0.5, 60.0)
    assert len(sleeps.delays) == 4 and worst - 1.0 < sum(sleeps.delays) <= worst
    assert (count(metrics, "ok"), count(metrics, "retried"), count(metrics, "failed")) == (0, 3, 1)
    assert [(f[0].violation_id, f[1].name, f[2]) for f in failures] == [
        ("v1", "hook", DeliveryFailure(4))
    ]


async def test_zero_max_retries_means_one_attempt(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    hook.fail(503)
    async with dispatching(Resolver(sink(base, max_retries=0)), clock) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 1 and count(metrics, "failed") == 1 and count(metrics, "retried") == 0


@pytest.mark.parametrize("code", [301, 307, 400, 401, 403, 404, 410, 413, 422])
async def test_every_failure_is_retried_alike(
    receiver: tuple[Receiver, str], clock: Clock, code: int
) -> None:
    """A 4xx (or a redirect, never followed) is retried like a refused connection, so the
    number of attempts tells a sink's author nothing about what answered."""
    hook, base = receiver
    hook.fail(*[code] * 3, Location="http://127.0.0.1:9/elsewhere")
    sleeps, failures = Sleeps(), list[Failure]()
    async with dispatching(Resolver(sink(base, max_retries=2)), clock, sleeps, failures) as (
        dispatcher,
        metrics,
    ):
        dispatcher.submit(ALERT, ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 3 and sleeps.delays[:2] == [1.0, 2.0]
    assert (count(metrics, "retried"), count(metrics, "failed")) == (2, 1)
    assert failures[0][2] == DeliveryFailure(3)


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_transient_answers_are_retried(
    receiver: tuple[Receiver, str], clock: Clock, code: int
) -> None:
    hook, base = receiver
    hook.fail(code)
    async with dispatching(Resolver(sink(base)), clock) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 2
    assert (count(metrics, "ok"), count(metrics, "retried")) == (1, 1)


async def test_retry_after_is_honoured_and_backoff_capped(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    hook.fail(429, **{"Retry-After": "7"})
    hook.fail(503, 503, 503, 503)
    sleeps = Sleeps()
    async with dispatching(
        Resolver(sink(base, max_retries=6)), clock, sleeps, backoff=1.0, backoff_cap=5.0
    ) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("hook",))
        await delivered(dispatcher)
    # Retry-After 7 s capped to 5; then 2, 4, then the cap
    assert sleeps.delays == [5.0, 2.0, 4.0, 5.0, 5.0]
    assert count(metrics, "ok") == 1


async def test_timeouts_and_refused_connections_are_retried(
    receiver: tuple[Receiver, str], clock: Clock, unused_tcp_port: int
) -> None:
    hook, base = receiver
    hook.delays = [1.0]  # the first answer is slower than the sink's timeout
    refused = ResolvedSink("gone", "webhook", f"http://127.0.0.1:{unused_tcp_port}/x")
    refused = replace(refused, max_retries=2, min_severity="low")
    failures: list[Failure] = []
    async with dispatching(
        Resolver(sink(base, timeout_seconds=0.1), refused), clock, failures=failures
    ) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("hook", "gone"))
        await delivered(dispatcher)
    assert hook.count() == 2 and count(metrics, "ok") == 1
    assert [(f[1].name, f[2]) for f in failures] == [("gone", DeliveryFailure(3))]
    assert count(metrics, "retried") == 1 + 2


async def test_invalid_url_is_refused_without_an_attempt(clock: Clock) -> None:
    bad = ResolvedSink("bad", "webhook", "not a url", max_retries=5)
    sleeps, failures = Sleeps(), list[Failure]()
    async with dispatching(Resolver(bad), clock, sleeps, failures) as (dispatcher, metrics):
        dispatcher.submit(ALERT, ("bad",))
        await delivered(dispatcher)
    assert sleeps.delays == [] and count(metrics, "refused") == 1
    assert failures[0][2] == DeliveryFailure(0, refused=True, rule=NOT_HTTP)


def test_retry_delay_and_retry_after_parsing() -> None:
    assert [retry_delay(1.0, n, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(1.0, 1, 60.0, retry_after=10.0) == 10.0
    assert retry_delay(8.0, 1, 60.0, retry_after=1.0) == 8.0  # never shorter than the backoff
    assert retry_delay(1.0, 500, 60.0) == 60.0  # no overflow on absurd retry counts
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    for bad in (None, "", "-1", "soon", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"):
        assert parse_retry_after(bad) is None


# -- dedup, filtering, overflow ---------------------------------------------------------


async def test_repeats_within_window_make_one_alert(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    async with dispatching(Resolver(sink(base)), clock, dedup_window=300.0) as (dispatcher, m):
        dispatcher.submit(ALERT, ("hook",))
        clock.now += 100
        dispatcher.submit(replace(ALERT, violation_id="v2"), ("hook",))
        dispatcher.submit(replace(ALERT, violation_id="v3", type="secrets"), ("hook",))
        await delivered(dispatcher)
        assert hook.count() == 2  # pii once, secrets once
        assert count(m, "deduplicated", "any") == 1
        clock.now += 201  # the window has passed since the first pii alert
        dispatcher.submit(replace(ALERT, violation_id="v4"), ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 3 and count(m, "ok") == 3


async def test_min_severity_filters_per_sink(receiver: tuple[Receiver, str], clock: Clock) -> None:
    hook, base = receiver
    resolver = Resolver(sink(base, "pager", min_severity="critical"), sink(base, "chat"))
    async with dispatching(resolver, clock) as (dispatcher, metrics):
        dispatcher.submit(replace(ALERT, severity="medium"), ("pager", "chat"))
        dispatcher.submit(replace(ALERT, severity="high"), ("pager", "chat"))
        dispatcher.submit(replace(ALERT, severity="critical"), ("pager", "chat"))
        await delivered(dispatcher)
    assert (hook.count("/pager"), hook.count("/chat")) == (1, 2)
    assert count(metrics, "ok") == 3


async def test_dropped_alert_does_not_silence_the_next(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    metrics = IngestMetrics(Aggregator(), clock)
    dispatcher = AlertDispatcher(
        Resolver(sink(base)), metrics, clock, queue_size=1, sleep=Sleeps(), policy=RECEIVERS
    )
    dispatcher.submit(ALERT, ("hook",))
    other = replace(ALERT, type="secrets")
    dispatcher.submit(other, ("hook",))  # queue full: dropped
    assert count(metrics, "dropped", "any") == 1
    worker = asyncio.create_task(dispatcher.run())
    try:
        await delivered(dispatcher)
        dispatcher.submit(replace(other, violation_id="v2"), ("hook",))
        await delivered(dispatcher)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert hook.count() == 2 and count(metrics, "deduplicated", "any") == 0


async def test_in_flight_deliveries_are_bounded(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    hook.delays = [0.1] * 5  # each delivery stays in flight a while: they would overlap

    async with dispatching(Resolver(sink(base)), clock, max_in_flight=2) as (dispatcher, _):
        for i in range(5):
            dispatcher.submit(replace(ALERT, type=f"t{i}"), ("hook",))
        await delivered(dispatcher)
    assert hook.count() == 5
    assert hook.most_in_flight == 2  # the bound was reached, and never passed


# -- the sink cache -----------------------------------------------------------------------


async def test_sink_cache_reads_once_within_ttl_and_sees_changes_after(clock: Clock) -> None:
    inner = Resolver(ResolvedSink("hook", "webhook", "http://a/"))
    cache = CachingSinkResolver(inner, clock, ttl=30.0)
    first = await cache.resolve("ns", ("hook",))
    clock.now += 29
    second = await cache.resolve("ns", ("hook",))
    assert first == second and len(inner.reads) == 1
    inner.sinks["hook"] = ResolvedSink("hook", "webhook", "http://b/")
    clock.now += 2
    assert [s.url for s in await cache.resolve("ns", ("hook",))] == ["http://b/"]
    assert len(inner.reads) == 2


async def test_sink_cache_keys_by_namespace_and_name(clock: Clock) -> None:
    inner = Resolver(ResolvedSink("a", "webhook", "u"), ResolvedSink("b", "slack", "u"))
    cache = CachingSinkResolver(inner, clock, ttl=30.0)
    assert [s.name for s in await cache.resolve("ns", ("a",))] == ["a"]
    assert [s.name for s in await cache.resolve("ns", ("a", "b", "a"))] == ["a", "b"]
    assert inner.reads == [("ns", ("a",)), ("ns", ("b",))]  # only the missing one is read
    await cache.resolve("other", ("a",))
    assert inner.reads[-1] == ("other", ("a",))


async def test_sink_cache_remembers_absence_but_not_errors(clock: Clock) -> None:
    inner = Resolver()
    cache = CachingSinkResolver(inner, clock, ttl=30.0)
    assert await cache.resolve("ns", ("missing",)) == []
    assert await cache.resolve("ns", ("missing",)) == []
    assert len(inner.reads) == 1
    inner.error = RuntimeError("API server down")
    clock.now += 31
    with pytest.raises(RuntimeError):
        await cache.resolve("ns", ("missing",))
    inner.error = None
    inner.sinks["missing"] = ResolvedSink("missing", "webhook", "u")
    assert len(await cache.resolve("ns", ("missing",))) == 1
    cache.invalidate("ns", "missing")
    await cache.resolve("ns", ("missing",))
    assert len(inner.reads) == 4


async def test_sink_cache_is_bounded(clock: Clock) -> None:
    inner = Resolver(*[ResolvedSink(f"s{i}", "webhook", "u") for i in range(10)])
    cache = CachingSinkResolver(inner, clock, ttl=30.0, max_entries=4)
    for i in range(10):
        await cache.resolve("ns", (f"s{i}",))
    await cache.resolve("ns", ("s9",))
    await cache.resolve("ns", ("s0",))
    assert len(inner.reads) == 11  # s9 was cached, s0 had been evicted


# -- through the service --------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def service_with(resolver: Resolver, clock: Clock, events: MemoryEvents) -> IngestService:
    settings = IngestSettings(
        alert_backoff_seconds=0.0,
        stale_check_seconds=3600.0,
        alert_sink_allowed_cidrs=(RECEIVER_NET,),
    )
    service = IngestService(
        settings, MemorySink(), event_sink=events, sink_resolver=resolver, clock=clock
    )
    service.upsert_agent(agent_config("team-a", "support-bot", alert_sinks=("hook",)))
    return service


async def report(service: IngestService, vtype: str, key: str) -> None:
    state = service.agent(AGENT)
    assert state is not None
    violation = PolicyViolation.model_validate({"type": vtype, "severity": "critical"})
    outcome = await service.violations(state, [violation], key)
    assert outcome.accepted == 1


async def test_final_failure_raises_a_warning_event(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    hook.fail(*[500] * 3)
    events = MemoryEvents()
    service = service_with(Resolver(sink(base, max_retries=2)), clock, events)
    service.start()
    try:
        await report(service, "pii", "k1")
        await delivered(service.alerts)
        await wait_for(lambda: any(e["reason"] == "AlertDeliveryFailed" for e in events.created))
    finally:
        await service.stop()
    failed = [e for e in events.created if e["reason"] == "AlertDeliveryFailed"]
    assert len(failed) == 1 and failed[0]["type"] == "Warning"
    assert failed[0]["message"] == "alert to webhook sink hook failed after 3 attempts"
    assert failed[0]["involvedObject"]["name"] == "support-bot"
    assert hook.count() == 3 and count(service.metrics, "failed") == 1


async def test_service_reads_sinks_once_within_ttl(
    receiver: tuple[Receiver, str], clock: Clock
) -> None:
    hook, base = receiver
    resolver = Resolver(sink(base))
    service = service_with(resolver, clock, MemoryEvents())
    service.start()
    try:
        await report(service, "pii", "k1")
        await report(service, "secrets", "k2")  # another type: not deduplicated
        await delivered(service.alerts)
        assert hook.count("/hook") == 2 and len(resolver.reads) == 1
        resolver.sinks["hook"] = replace(sink(base), url=base + "moved")
        clock.now += 10
        await report(service, "jailbreak", "k3")
        await delivered(service.alerts)
        assert hook.count("/moved") == 0  # still within the TTL: the old URL
        clock.now += service.settings.alert_sink_cache_seconds
        await report(service, "toxicity", "k4")
        await delivered(service.alerts)
    finally:
        await service.stop()
    assert hook.count("/moved") == 1 and len(resolver.reads) == 2
