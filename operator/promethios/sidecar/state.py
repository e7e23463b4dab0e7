"""The sidecar's live state: config, compiled policy, limits, counters, spool, metrics.

One :class:`SidecarState` per running sidecar; the proxy, the reporting endpoints
and the delivery loops all share it. Findings become violations here: each is
written to the spool (off the event loop, fsync included) before the caller
answers the agent, counted in metrics and in the local trust estimate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from promethios.api.sidecarconfig import SidecarConfig
from promethios.api.wire import MAX_CONTEXT_BYTES

from .bounds import ByteBudget
from .budget import BudgetBook
from .config import ConfigStore, Snapshot
from .folding import AgentReports, TokenBucket
from .metrics import SidecarMetrics
from .policy import Finding, PolicyEngine
from .ratelimit import MINUTE, Limiter
from .spool import Spool
from .trust import TrustEstimator

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A refused call in a hot loop is reported at most once per rule per this many seconds.
LIMIT_REPORT_COOLDOWN = MINUTE
#: Sub-directory of the spool for the violations the agent reports itself.
AGENT_SPOOL_DIR = "agent"


def new_idempotency_key() -> str:
    """A fresh idempotency key for one violation."""
    return f"sc-{uuid.uuid4().hex}"


def utc_iso(timestamp: float) -> str:
    """An ISO-8601 UTC timestamp for the wire."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


class SidecarState:
    """Everything the sidecar's handlers and loops share."""

    def __init__(
        self,
        store: ConfigStore,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self.wall_clock = wall_clock
        self.metrics = SidecarMetrics()
        config = store.config
        self.spool = Spool(
            config.spool_dir,
            config.spool_max_entries,
            on_drop=lambda sev: self.metrics.spool_dropped.labels(severity=sev).inc(),
        )
        #: The agent's self-reported violations: their own, smaller spool, delivered after
        #: the sidecar's findings, so a flood of them can neither evict nor delay those.
        self.agent_spool = Spool(
            Path(config.spool_dir) / AGENT_SPOOL_DIR,
            max(10, config.spool_max_entries // 10),
            on_drop=lambda sev: self.metrics.spool_dropped.labels(severity=sev).inc(),
        )
        self.metrics.spool_entries.set(len(self.spool) + len(self.agent_spool))
        #: Bytes held by concurrent calls (read at start: a reload does not resize it).
        self.buffers = ByteBudget(config.limits.max_buffered_bytes)
        #: Big bodies are inspected off the event loop, one at a time and always on the
        #: same thread: an inspection's transient copies are the largest thing the
        #: sidecar holds, never two at once, and one thread keeps one malloc arena.
        self.inspector = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect")
        per_minute = config.limits.agent_violations_per_minute
        self.agent_violation_budget = TokenBucket(per_minute / 60.0, max(10.0, per_minute / 6))
        self.agent = AgentReports()
        #: Set when the agent's status changed: the heartbeat loop reports it early.
        self.heartbeat_due = asyncio.Event()
        self.engine = self._engine(store.current)
        self.limiter = Limiter(config.policy)
        #: Leases of the budgets the ingest API keeps (see :mod:`.budget`, :mod:`.allowance`).
        self.budgets = BudgetBook(required_budgets(config))
        self.trust = TrustEstimator(config.policy, clock())
        self.started_wall = wall_clock()
        self.started = clock()
        self.last_activity_wall = self.started_wall
        self.interactions = 0
        self._latency_sum = 0.0
        self._latency_count = 0
        self._last_response_ms = 0.0
        self._limit_reported: dict[str, float] = {}
        self.violations_waiting = asyncio.Event()

    @staticmethod
    def _engine(snapshot: Snapshot) -> PolicyEngine:
        config = snapshot.config
        return PolicyEngine(config.policy, config.mode, config.provider.allowed_models)

    def apply_snapshot(self, old: Snapshot, new: Snapshot) -> None:
        """Recompile policy and limits after a reload (the windows carry over)."""
        self.engine = self._engine(new)
        if new.config.policy != old.config.policy:
            limiter = Limiter(new.config.policy)
            limiter.carry_over(self.limiter)
            self.limiter = limiter
            self.trust.policy = new.config.policy
            self.budgets.required = required_budgets(new.config)
        self.metrics.config_reloads.labels(result="ok").inc()

    # -- activity --------------------------------------------------------------

    def record_call(self, seconds: float) -> None:
        """Count one model call and its duration (for the metrics report)."""
        self.interactions += 1
        self._latency_sum += seconds
        self._latency_count += 1
        self.last_activity_wall = self.wall_clock()

    def take_response_time_ms(self) -> float:
        """Average call duration since the last report (the previous one if no calls)."""
        if self._latency_count:
            self._last_response_ms = 1000.0 * self._latency_sum / self._latency_count
            self._latency_sum, self._latency_count = 0.0, 0
        return round(self._last_response_ms, 3)

    def uptime(self) -> float:
        """Seconds since the sidecar started."""
        return round(max(0.0, self.clock() - self.started), 3)

    # -- violations ------------------------------------------------------------

    def should_report_limit(self, code: str) -> bool:
        """Rate-limit refusals are reported once per rule per cooldown, not per call."""
        now = self.clock()
        last = self._limit_reported.get(code)
        if last is not None and now - last < LIMIT_REPORT_COOLDOWN:
            return False
        self._limit_reported[code] = now
        return True

    async def report(self, findings: list[Finding], extra: dict[str, Any] | None = None) -> None:
        """Spool one violation per finding; returns once they are on disk."""
        if not findings:
            return
        violations = [self.violation_of(f, extra) for f in findings]
        await self.spool_violations(violations)

    def violation_of(self, finding: Finding, extra: dict[str, Any] | None) -> dict[str, Any]:
        """The wire violation for a finding (context already redacted by the engine)."""
        context = {"rule": finding.rule, "action": finding.action, **finding.context}
        if extra:
            context.update(extra)
        self.metrics.violations.labels(
            kind=finding.code.split(".", 1)[0], severity=finding.severity
        ).inc()
        self.trust.record(finding.severity, self.clock())
        return {
            "type": finding.code,
            "severity": finding.severity,
            "description": finding.description,
            "context": _bounded(context),
            "idempotencyKey": new_idempotency_key(),
            "timestamp": utc_iso(self.wall_clock()),
        }

    async def spool_violations(
        self, violations: list[dict[str, Any]], from_agent: bool = False
    ) -> None:
        """Spool violations durably (in the agent's spool if ``from_agent``); wake the sender."""
        spool = self.agent_spool if from_agent else self.spool
        await asyncio.to_thread(_spool_all, spool, violations)
        self.count_spooled()
        self.violations_waiting.set()

    async def inspect_aside(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a big inspection on the inspection thread (one at a time, loop stays free)."""
        return await asyncio.get_running_loop().run_in_executor(self.inspector, fn, *args)

    def count_spooled(self) -> None:
        """Update the spool gauge."""
        self.metrics.spool_entries.set(len(self.spool) + len(self.agent_spool))

    def take_dropped(self) -> dict[str, int]:
        """Violations both spools dropped since the last call, by severity."""
        dropped = Counter(self.spool.take_dropped())
        dropped.update(self.agent_spool.take_dropped())
        return dict(dropped)


def required_budgets(config: SidecarConfig) -> frozenset[str]:
    """``<policy>/<budget>`` of every budget of the agent's own policy."""
    return frozenset(f"{config.policy_name}/{budget.name}" for budget in config.policy.budgets)


def _spool_all(spool: Spool, violations: list[dict[str, Any]]) -> None:
    for violation in violations:
        spool.put(violation)


def _bounded(context: dict[str, Any]) -> dict[str, Any]:
    """Keep the context under the wire limit by shortening the excerpt."""
    if len(json.dumps(context, default=str)) <= MAX_CONTEXT_BYTES:
        return context
    context = {**context, "excerpt": str(context.get("excerpt", ""))[:200]}
    if len(json.dumps(context, default=str)) <= MAX_CONTEXT_BYTES:
        return context
    return {"rule": context.get("rule"), "action": context.get("action")}
