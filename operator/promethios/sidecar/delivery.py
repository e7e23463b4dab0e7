"""Delivery to the ingest API: heartbeats, metrics, and the spooled violations.

Requests go through :class:`~.ingestclient.IngestClient`. Violations leave the spool only
when the ingest API acknowledges them (2xx) or refuses them for good (a 4xx
other than 401/408/429, which moves them to ``rejected/``); everything else is
retried with exponential backoff and full jitter, for as long as it takes.

Only the sidecar's own loops talk to the ingest API (the agent's reports are
folded into them, see :mod:`.folding`), and violations have a connection pool
of their own: heartbeats and metrics can never hold up a violation. The
sidecar's findings are delivered before the violations the agent reports itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from typing import Any, Literal

from promethios.api.wire import MAX_BATCH, PATH_HEARTBEAT, PATH_METRICS, PATH_VIOLATIONS

from .ingestclient import IngestClient, IngestResponse
from .spool import Spool, SpoolEntry
from .state import SidecarState, new_idempotency_key, utc_iso

log = logging.getLogger(__name__)

IDLE_RECHECK_SECONDS = 30.0
#: Heartbeats are at least this far apart, even when the agent's status keeps changing.
MIN_HEARTBEAT_GAP = 1.0
#: While draining on the way out, a failed delivery is retried after this long at first,
#: doubling up to :data:`DRAIN_RETRY_CAP`: drains last up to 10 minutes, and the replaced
#: pods of a whole rollout must not hammer an ingest that is coming back.
DRAIN_RETRY = 0.2
DRAIN_RETRY_CAP = 2.0

Outcome = Literal["idle", "progress", "retry"]


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))


def jittered(interval: float, rng: random.Random, spread: float = 0.1) -> float:
    """``interval`` ± ``spread`` (10 %), so a fleet of sidecars does not beat in step."""
    return interval * rng.uniform(1.0 - spread, 1.0 + spread)


class Delivery:
    """The three delivery loops; each ``send_*``/``deliver_once`` is one step, for tests."""

    def __init__(
        self,
        state: SidecarState,
        violations: IngestClient,
        reports: IngestClient,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.violations = violations  # its own connection pool
        self.reports = reports
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        #: Set when a heartbeat or metrics report got through: a violation backoff that
        #: has no Retry-After to honour ends early (see :meth:`_back_off`).
        self.ingest_answered = asyncio.Event()
        #: Drop counts sent in a metrics report the ingest has not confirmed, and that
        #: report's idempotency key: resent under the same key until it is confirmed.
        self.unconfirmed_drops: tuple[str, dict[str, int]] | None = None

    # -- heartbeat and metrics ------------------------------------------------

    def heartbeat_payload(self) -> dict[str, Any]:
        """The seed's heartbeat shape, with the agent's own status folded in."""
        state = self.state
        config = state.store.config
        interval = config.ingest.heartbeat_interval_seconds
        return {
            "agentId": config.agent_id,
            "status": state.agent.status_for(state.clock(), interval),
            "uptime": state.uptime(),
            "lastActivity": utc_iso(state.agent.last_activity(state.last_activity_wall)),
        }

    def metrics_payload(self, dropped: dict[str, int]) -> dict[str, Any]:
        """The seed's metrics shape, the agent's folded in, plus ``droppedViolations``."""
        state = self.state
        config = state.store.config
        return {
            "agentId": config.agent_id,
            "governanceIdentity": config.governance_identity,
            "metrics": {
                "trustScore": state.agent.trust(state.trust.value(state.clock())),
                "violations": [],
                "interactions": max(state.interactions, state.agent.interactions),
                "responseTime": state.agent.take_response_time(state.take_response_time_ms()),
                "droppedViolations": sum(dropped.values()),
                "droppedViolationsBySeverity": dropped,
            },
            "timestamp": utc_iso(state.wall_clock()),
        }

    async def send_heartbeat(self) -> IngestResponse:
        """Send one heartbeat."""
        response = await self.reports.post(PATH_HEARTBEAT, self.heartbeat_payload())
        self._count("heartbeat", response)
        if response.ok:
            self.ingest_answered.set()
        return response

    async def send_metrics(self) -> IngestResponse:
        """Send one metrics report, with the spools' drop counts.

        Drop counts are never lost nor counted twice: until the ingest confirms a
        report that carries some, the next report carries the same counts under
        the same idempotency key (if the ingest did record it and only its answer
        was lost, it ignores the repeat); newer drops wait for the report after.
        """
        if self.unconfirmed_drops is None:
            dropped = self.state.take_dropped()
            if dropped:
                self.unconfirmed_drops = (new_idempotency_key(), dropped)
        key, dropped = self.unconfirmed_drops or (new_idempotency_key(), {})
        response = await self.reports.post(PATH_METRICS, self.metrics_payload(dropped), key)
        if response.ok:
            self.unconfirmed_drops = None
            self.ingest_answered.set()
        self._count("metrics", response)
        return response

    def unreported_drops(self) -> dict[str, int]:
        """Drops the ingest has not confirmed: sent without an answer, or not sent yet."""
        total = Counter(self.unconfirmed_drops[1] if self.unconfirmed_drops else {})
        total.update(self.state.spool.peek_dropped())
        total.update(self.state.agent_spool.peek_dropped())
        return dict(total)

    async def drain(self, seconds: float) -> bool:
        """Deliver the spools until they are empty or ``seconds`` have passed (stopping).

        Retries sooner than the loop does (from :data:`DRAIN_RETRY`, doubling to
        :data:`DRAIN_RETRY_CAP`), then sends one last metrics report if drop counts are
        still unconfirmed. True if the spools were emptied.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        emptied, pause = False, DRAIN_RETRY
        while not emptied and loop.time() < deadline:
            try:
                async with asyncio.timeout_at(deadline):
                    outcome, retry_after = await self.deliver_once()
                    emptied = outcome == "idle"
                    if outcome == "retry":
                        wait = min(max(retry_after or 0.0, pause), DRAIN_RETRY_CAP)
                        await asyncio.sleep(jittered(wait, self.rng))
                        pause = min(2 * pause, DRAIN_RETRY_CAP)
                    else:
                        pause = DRAIN_RETRY
            except TimeoutError:
                break
        if self.unreported_drops() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self.send_metrics()
        return emptied

    async def heartbeat_loop(self) -> None:
        """Heartbeat every ``heartbeat_interval_seconds`` ± 10 %, and early (at most once
        per :data:`MIN_HEARTBEAT_GAP` seconds) when the agent's status changed."""
        due = self.state.heartbeat_due
        while True:
            due.clear()
            await self.send_heartbeat()
            interval = self.state.store.config.ingest.heartbeat_interval_seconds
            await asyncio.sleep(min(MIN_HEARTBEAT_GAP, interval))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), jittered(interval, self.rng) - MIN_HEARTBEAT_GAP)

    async def metrics_loop(self) -> None:
        """A metrics report every ``metrics_interval_seconds`` ± 10 %."""
        while True:
            interval = self.state.store.config.ingest.metrics_interval_seconds
            await asyncio.sleep(jittered(interval, self.rng))
            await self.send_metrics()

    # -- violations -------------------------------------------------------------

    async def violation_loop(self) -> None:
        """Drain the spool forever: wait for work, back off while the ingest API fails."""
        attempt = 0
        while True:
            outcome, retry_after = await self.deliver_once()
            if outcome == "progress":
                attempt = 0
            elif outcome == "idle":
                attempt = 0
                await self._wait_for_work()
            else:
                delay = full_jitter(attempt, self.backoff_base, self.backoff_cap, self.rng)
                attempt += 1
                await self._back_off(delay, retry_after)

    async def _back_off(self, delay: float, retry_after: float | None) -> None:
        """Wait before the next violation attempt: ``delay``, but never less than the
        ingest's Retry-After.

        Beyond the Retry-After, the wait ends as soon as a heartbeat or metrics report got
        through since the failure: the ingest is back (or, after a 503, answers again). After
        a long outage the backoff has grown to ``backoff_cap``, and the spool would otherwise
        sit out up to that long after the ingest returned; heartbeats are jittered, so the
        fleet does not come back in step.
        """
        floor = retry_after or 0.0
        self.ingest_answered.clear()
        if floor:
            await asyncio.sleep(floor)
        if delay > floor and not self.ingest_answered.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ingest_answered.wait(), delay - floor)

    async def _wait_for_work(self) -> None:
        waiting = self.state.violations_waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiting.wait(), IDLE_RECHECK_SECONDS)
        waiting.clear()

    async def deliver_once(self) -> tuple[Outcome, float | None]:
        """Send the oldest batch of spooled violations once: the sidecar's findings first."""
        self.state.violations_waiting.clear()
        spool = self.state.spool
        batch = await asyncio.to_thread(spool.pending, MAX_BATCH)
        if not batch:
            spool = self.state.agent_spool
            batch = await asyncio.to_thread(spool.pending, MAX_BATCH)
        if not batch:
            return "idle", None
        response = await self._send(batch)
        if response.ok:
            self._settle(spool, batch, rejected=False)
            return "progress", None
        if response.permanent_failure:
            return await self._isolate(spool, batch)
        self._count("violations", response)
        return "retry", response.retry_after

    async def _isolate(
        self, spool: Spool, batch: list[tuple[SpoolEntry, dict[str, Any]]]
    ) -> tuple[Outcome, float | None]:
        """A batch was refused: send one by one so only the bad violations are rejected."""
        if len(batch) == 1:
            log.error(
                "ingest API refused violation %s for good; moved to rejected/", batch[0][0].key
            )
            self._settle(spool, batch, rejected=True)
            return "progress", None
        for item in batch:
            response = await self._send([item])
            if response.ok or response.permanent_failure:
                self._settle(spool, [item], rejected=not response.ok)
            else:
                self._count("violations", response)
                return "retry", response.retry_after
        return "progress", None

    async def _send(self, batch: list[tuple[SpoolEntry, dict[str, Any]]]) -> IngestResponse:
        agent_id = self.state.store.config.agent_id
        if len(batch) == 1:
            entry, violation = batch[0]
            payload = {"agentId": agent_id, "violation": violation, "idempotencyKey": entry.key}
            return await self.violations.post(PATH_VIOLATIONS, payload, entry.key)
        key = "batch-" + batch[0][0].key + "-" + str(len(batch))
        batch_payload: dict[str, Any] = {"agentId": agent_id, "violations": [v for _, v in batch]}
        return await self.violations.post(PATH_VIOLATIONS, batch_payload, key)

    def _settle(
        self, spool: Spool, batch: list[tuple[SpoolEntry, dict[str, Any]]], rejected: bool
    ) -> None:
        keys = [entry.key for entry, _ in batch]
        if rejected:
            spool.reject(keys)
        else:
            spool.ack(keys)
        result = "rejected" if rejected else "ok"
        self.state.metrics.deliveries.labels(kind="violations", result=result).inc(len(keys))
        self.state.count_spooled()

    def _count(self, kind: str, response: IngestResponse) -> None:
        result = "ok" if response.ok else ("unreachable" if response.status is None else "error")
        self.state.metrics.deliveries.labels(kind=kind, result=result).inc()
