"""The ingest service: what happens to an authenticated, validated report.

Glues the pure parts (aggregation, trust, enforcement, event and alert decisions) to the
I/O interfaces (status sink, event sink, alert sink resolver). The HTTP layer
(:mod:`.app`) calls :meth:`IngestService.heartbeat`, :meth:`.metrics` and
:meth:`.violations`; heartbeats and metrics are acknowledged from memory, violations only
after the status write that records them succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..api.wire import HeartbeatReport, MetricsReport, PolicyViolation
from . import events as ev
from .agents import AgentConfig
from .aggregator import Aggregator
from .alertformat import Alert, ResolvedSink
from .alerts import (
    AlertDispatcher,
    CachingSinkResolver,
    DeliveryFailure,
    SinkResolver,
    failure_message,
)
from .allowance import AllowanceService
from .budgetcatalog import AGENT_KIND, POLICY_KIND, BudgetCatalog, Owner, policy_budgets
from .budgetmetrics import BudgetMetrics
from .codec import rfc3339
from .destinations import DestinationPolicy
from .keystore import KeyStore
from .metrics import IngestMetrics
from .records import Outcome, Recorded
from .settings import IngestSettings
from .sinkstatus import SinkStatusIO, SinkStatusRecorder
from .state import AgentState, StoredAgent
from .usagewriter import MemoryUsageStore, UsageStore, UsageWriter
from .writer import StatusSink, StatusWriter

log = logging.getLogger(__name__)
USAGE_ROLL_SECONDS = 30.0
"""How often ended budget windows are written out as reset (nothing else writes them)."""


class EventSink(Protocol):
    """Creates and patches core/v1 Events; both return the HTTP status."""

    async def create_event(self, namespace: str, body: dict[str, Any]) -> int: ...

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> int: ...


class NoSinks:
    """A resolver with no sinks (tests and benchmarks)."""

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        """Nothing to deliver to."""
        return []


class IngestService:
    """One per process: aggregator, status writer, alerts, events, keys and metrics."""

    def __init__(
        self,
        settings: IngestSettings,
        status_sink: StatusSink,
        keystore: KeyStore | None = None,
        event_sink: EventSink | None = None,
        sink_resolver: SinkResolver | None = None,
        clock: Callable[[], float] = time.time,
        usage_store: UsageStore | None = None,
        sink_status: SinkStatusIO | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.keystore = keystore or KeyStore()
        self.aggregator = Aggregator(
            settings.idempotency_ttl_seconds,
            settings.idempotency_max_keys,
            settings.history_seconds,
            settings.history_max_events,
        )
        self.metrics = IngestMetrics(self.aggregator, clock, settings.max_violation_types_per_agent)
        self.writer = StatusWriter(
            self.aggregator,
            status_sink,
            self.metrics,
            clock,
            settings.flush_interval_seconds,
            heartbeat_interval=settings.heartbeat_flush_seconds,
            write_budget=settings.write_budget_per_second,
        )
        resolver: SinkResolver = sink_resolver or NoSinks()
        if settings.alert_sink_cache_seconds > 0:
            resolver = CachingSinkResolver(resolver, clock, settings.alert_sink_cache_seconds)
        self.sink_resolver = resolver
        self.sink_status = SinkStatusRecorder(sink_status, clock)
        self.alerts = AlertDispatcher(
            resolver,
            self.metrics,
            clock,
            settings.alert_dedup_seconds,
            settings.alert_backoff_seconds,
            settings.alert_queue_size,
            self._alert_failed,
            backoff_cap=settings.alert_backoff_cap_seconds,
            policy=DestinationPolicy(settings.alert_sink_allowed_cidrs),
            on_delivered=lambda alert, sink: self.sink_status.delivered(alert.namespace, sink.name),
        )
        self._budgets(usage_store or MemoryUsageStore())
        self.events = ev.EventAggregator(settings.event_aggregation_seconds)
        self._event_sink = event_sink
        self._background: set[asyncio.Task[None]] = set()
        self._runners: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    def _budgets(self, store: UsageStore) -> None:
        """Budgets: the catalog, the usage writer, the allowance exchange, their metrics."""
        self.budgets = BudgetCatalog()
        self.usage = UsageWriter(
            store,
            self.budgets,
            self.clock,
            on_crossed=lambda *args: self.allowance.on_crossed(*args),
            on_result=lambda result: self.budget_metrics.writes.labels(result).inc(),
        )
        self.budget_metrics = BudgetMetrics(self.metrics.registry, self.usage.books.values)
        self.allowance = AllowanceService(
            self.budgets,
            self.usage,
            self.budget_metrics,
            self.clock,
            lambda alert, sinks: self.alerts.submit(alert, sinks, dedup=False),
            self._trust_of,
            self.settings.status_write_timeout_seconds,
        )

    def _trust_of(self, agent_id: str) -> float:
        state = self.aggregator.agents.get(agent_id)
        return state.trust_score(self.clock()) if state is not None else 1.0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background loops (status flush/stale checker, alert delivery)."""
        loop = asyncio.get_running_loop()
        self._runners = [
            loop.create_task(self.writer.run(self.settings.stale_check_seconds)),
            loop.create_task(self.alerts.run()),
            loop.create_task(self._roll_budgets()),
            loop.create_task(self.sink_status.run()),
        ]

    async def _roll_budgets(self) -> None:
        while True:
            await asyncio.sleep(USAGE_ROLL_SECONDS)
            self.usage.roll_due()

    async def idle(self) -> None:
        """Return once no status write and no Event request is in flight (tests, shutdown)."""
        while True:
            await self.writer.idle()
            if not self._background:
                return
            await asyncio.gather(*self._background, return_exceptions=True)

    async def stop(self) -> None:
        """Stop background work."""
        for task in [*self._runners, *self._background]:
            task.cancel()
        await asyncio.gather(*self._runners, *self._background, return_exceptions=True)
        await self.writer.close()
        await self.usage.close()

    # -- agents (fed by the watch) ----------------------------------------------------------

    def upsert_agent(
        self,
        config: AgentConfig,
        status: dict[str, Any] | None = None,
        stored: StoredAgent | None = None,
    ) -> None:
        """An agent appeared, its spec changed or its stored status moved (``stored``)."""
        self.aggregator.upsert_agent(config, self.clock(), status, stored)
        self.writer.note(config.agent_id)
        if stored is not None:
            owner = Owner(AGENT_KIND, config.namespace, config.name)
            usage = stored.status.get("usage")
            policy = config.governance.policy_ref.name
            self.usage.observe(owner, stored.resource_version, usage, policy if usage else None)

    def remove_agent(self, agent_id: str) -> None:
        """An agent was deleted."""
        self.aggregator.remove_agent(agent_id)
        self.writer.forget(agent_id)
        namespace, _, name = agent_id.partition("/")
        self.metrics.forget_agent(namespace, name)
        self.usage.forget(Owner(AGENT_KIND, namespace, name))

    def policy_seen(self, obj: dict[str, Any]) -> None:
        """A GovernancePolicy appeared or changed (its budgets, or its stored usage)."""
        policy = policy_budgets(obj)
        self.budgets.put(policy)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        usage = (obj.get("status") or {}).get("usage")
        if usage or policy.budgets:
            self.usage.observe(Owner(POLICY_KIND, policy.namespace, policy.name), version, usage)

    def policy_removed(self, namespace: str, name: str) -> None:
        """A GovernancePolicy was deleted."""
        self.budgets.remove(namespace, name)
        self.usage.forget(Owner(POLICY_KIND, namespace, name))

    def agent(self, agent_id: str) -> AgentState | None:
        """The state of a known agent."""
        return self.aggregator.agents.get(agent_id)

    # -- reports ------------------------------------------------------------------------

    def heartbeat(self, state: AgentState, report: HeartbeatReport, key: str | None) -> Outcome:
        """Record a heartbeat; acknowledged from memory."""
        outcome = self.aggregator.heartbeat(state, report, key, self.clock())
        self.writer.note(state.config.agent_id)
        return outcome

    async def metrics_report(
        self, state: AgentState, report: MetricsReport, key: str | None
    ) -> Outcome:
        """Record a metrics report; waits for the status write only if it carried violations
        or drops (both are acknowledged only once the API server has them)."""
        before = state.enforcement.breach
        outcome = self.aggregator.metrics(state, report, key, self.clock())
        if outcome.lost:
            self._after_losses(state, outcome.lost)
        if outcome.violations:
            self._after_violations(state, outcome.violations, before)
        if outcome.violations or outcome.lost:
            await self.writer.flush(
                state.config.agent_id, self.settings.status_write_timeout_seconds
            )
        else:
            self.writer.note(state.config.agent_id)
        return outcome

    async def violations(
        self, state: AgentState, violations: list[PolicyViolation], key: str | None
    ) -> Outcome:
        """Record violations and return once the API server has them."""
        before = state.enforcement.breach
        outcome = self.aggregator.violations(state, violations, key, self.clock())
        if outcome.violations:
            self._after_violations(state, outcome.violations, before)
        # Duplicates wait too: a retry after a failed write must not be acknowledged early.
        await self.writer.flush(state.config.agent_id, self.settings.status_write_timeout_seconds)
        return outcome

    def _after_violations(
        self, state: AgentState, added: tuple[Recorded, ...], breach_before: int
    ) -> None:
        config = state.config
        now = self.clock()
        trust = state.trust_score(now)
        for item in added:
            self.metrics.count_violation(config.namespace, config.name, item.severity, item.type)
            if ev.wants_event(item.severity):
                self._violation_event(state, item)
            self.alerts.submit(
                Alert(
                    config.namespace,
                    config.name,
                    item.id,
                    item.type,
                    item.severity,
                    item.description,
                    rfc3339(item.time) or "",
                    trust,
                    state.enforcement.action,
                ),
                config.alert_sinks,
            )
        if state.enforcement.breach > breach_before:
            enforced = state.enforcement
            text = f"breach {enforced.breach}: {enforced.reason}; action {enforced.action}"
            self._event(state, "PolicyBreach", text, aggregate_key=None)

    def _after_losses(self, state: AgentState, lost: tuple[tuple[str, int], ...]) -> None:
        config = state.config
        for severity, count in lost:
            self.metrics.lost_violations.labels(config.namespace, config.name, severity).inc(count)
        detail = ", ".join(f"{count} {severity}" for severity, count in lost)
        text = f"the sidecar dropped violations ({detail}): its spool was full"
        self._event(state, "ViolationsLost", text, aggregate_key=("lost", "any"))

    # -- events -------------------------------------------------------------------------

    def _violation_event(self, state: AgentState, item: Recorded) -> None:
        text = ev.message(item.type, item.severity, item.description)
        self._event(state, "PolicyViolation", text, aggregate_key=(item.type, item.severity))

    def _event(
        self, state: AgentState, reason: str, text: str, aggregate_key: tuple[str, str] | None
    ) -> None:
        if self._event_sink is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._send_event(state, reason, text, aggregate_key)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_event(
        self, state: AgentState, reason: str, text: str, aggregate_key: tuple[str, str] | None
    ) -> None:
        assert self._event_sink is not None
        config = state.config
        now = self.clock()
        if aggregate_key is None:
            action = ev.EventAction(True, f"{config.name}.{int(now * 1000):x}", 1, now, now)
        else:
            action = self.events.record(config.namespace, config.name, *aggregate_key, now)
        try:
            if not action.create:
                code = await self._event_sink.patch_event(
                    config.namespace, action.name, ev.count_patch(action, text)
                )
                if code < 300:
                    self.metrics.events.labels("patch").inc()
                    return
                if aggregate_key is not None:  # the Event expired or vanished: start a new series
                    self.events.forget(config.namespace, config.name, *aggregate_key)
                    action = self.events.record(config.namespace, config.name, *aggregate_key, now)
            body = ev.event_body(action, config.namespace, config.name, config.uid, reason, text)
            code = await self._event_sink.create_event(config.namespace, body)
            self.metrics.events.labels("create" if code < 300 else "error").inc()
        except Exception as error:  # events are best effort; never fail a report for one
            self.metrics.events.labels("error").inc()
            log.warning("event for %s failed: %s", config.agent_id, error)

    async def _alert_failed(
        self, alert: Alert, sink: ResolvedSink, failure: DeliveryFailure
    ) -> None:
        text = failure_message(sink, failure)  # never the error itself: see .alerts
        self.sink_status.failed(alert.namespace, sink.name, text, failure.refused)
        state = self.aggregator.agents.get(alert.agent_id)
        if state is not None:
            self._event(state, "AlertDeliveryFailed", text, aggregate_key=None)
