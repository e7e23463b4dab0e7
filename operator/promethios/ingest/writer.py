"""Status write-back: a report never maps one-to-one to an API server write.

Flush policy (pure, :func:`flush_due`): an agent's status is written

- at once when something a person would want to see changed — the heartbeat state, a
  condition's status, the enforcement action/breach — or when a caller awaits the write
  (``urgent``): every report that records violations does, because violations are
  acknowledged only once the API server has them;
- otherwise (a *routine* refresh: metrics values, trust recovering) at most once per
  ``flush_interval`` per agent, and only if anything changed;
- when only ``lastHeartbeat``/``uptime`` moved, at most once per ``heartbeat_flush``
  (default 120 s): the HeartbeatFresh condition already says whether the agent is alive.

Routine and heartbeat-only refreshes share a fleet-wide budget of ``write_budget`` writes
per second (default 20): each agent's refresh interval is at least ``agents / budget``
seconds, so the interval grows with the fleet (10,000 agents at 20/s: one refresh per
agent every 500 s). Agents first written together (a fleet that started, or an ingest that
restarted, within one heartbeat interval) come due together too, so a fleet-wide token
bucket (at most one second's budget at once) also holds these writes to the budget: one
that finds no token stays due and is tried at the agent's next report or tick. They never
exceed the budget, whatever the fleet's size.
What a person must see — a condition flipping (stale, compliant), violations, enforcement
— is never budgeted: it is written at once.

One write per agent is in flight at a time; callers that await a flush while a write is
running join the next one, so concurrent violations for one agent coalesce into a single
write. Writes go through a :class:`StatusSink` (the real one runs the synchronous
Kubernetes client in a worker thread; tests use an in-memory one).

Replicas: a :class:`ConsistentStatusSink` (the real one) writes with the stored
resourceVersion as a precondition. Before each attempt the view is merged onto the
latest stored status (:func:`.merge.rebase`, only when another replica wrote it); a
409 means a concurrent write: re-read, merge again, retry up to
:data:`CONFLICT_ATTEMPTS` times with a short random pause, then fail like any other write
error (waiters fail, the agent stays dirty and is retried after
:data:`RETRY_AFTER_ERROR`). The deltas a write carried are cleared only once it
succeeded. A sink without preconditions (tests, benchmarks) gets a plain apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .aggregator import Aggregator
from .codec import encode_status
from .conditions import refresh
from .metrics import IngestMetrics
from .pending import PendingSnapshot
from .ratelimit import RateLimiter
from .state import AgentState, StoredAgent, stored_agent

log = logging.getLogger(__name__)
RETRY_AFTER_ERROR = 5.0
CONFLICT_ATTEMPTS = 6
"""Write attempts per flush when other replicas keep winning the race (409)."""
CONFLICT_PAUSE = 0.05
"""Upper bound of the random pause before conflict retry n is n times this (seconds)."""
TICK_CHUNK = 200
"""Agents per slice of the periodic pass (see :meth:`StatusWriter.run`)."""
FLEET = "fleet"
"""The one key of the fleet-wide routine-write budget's :class:`RateLimiter`."""


class StatusSink(Protocol):
    """Where ingest-owned status goes; returns the HTTP status of the write (404: gone)."""

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int: ...


@dataclass(frozen=True)
class WriteResult:
    """Outcome of a conditional status write: HTTP status and the object written (if any)."""

    code: int
    obj: dict[str, Any] | None = None


@runtime_checkable
class ConsistentStatusSink(Protocol):
    """A status sink with optimistic concurrency (what several replicas need)."""

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int: ...

    async def apply_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> WriteResult:
        """Write ``status`` only if the object is still at ``resource_version`` (else 409)."""
        ...

    async def read_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The GovernedAgent as stored (None if it is gone)."""
        ...


class StatusWriteError(Exception):
    """A status write failed; the report should be retried by the client."""


def signature(state: AgentState) -> tuple[Any, ...]:
    """The parts of the state whose change warrants an immediate write."""
    conditions = tuple(sorted((ctype, c.status) for ctype, c in state.conditions.items()))
    return (state.heartbeat_state, conditions, state.enforcement.action, state.enforcement.breach)


def flush_due(
    *,
    dirty: bool,
    urgent: bool,
    significant: bool,
    last_write: float,
    now: float,
    interval: float,
    heartbeat_dirty: bool = False,
    heartbeat_interval: float = math.inf,
) -> bool:
    """Whether to write an agent's status now (see the module docstring)."""
    if urgent:
        return True
    if dirty:
        return significant or now - last_write >= interval
    return heartbeat_dirty and now - last_write >= heartbeat_interval


def budget_interval(agents: int, budget: float) -> float:
    """The least seconds between two routine refreshes of one agent so that a fleet of
    ``agents`` stays within ``budget`` routine writes per second (0: no budget)."""
    return agents / budget if budget > 0 else 0.0


@dataclass
class _Track:
    """Per-agent write bookkeeping."""

    written_version: int = -1
    written_heartbeat_version: int = -1
    written_signature: tuple[Any, ...] | None = None
    last_write: float = -math.inf
    retry_at: float = -math.inf
    urgent: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class StatusWriter:
    """Flushes agents' status according to :func:`flush_due`; one per process."""

    def __init__(
        self,
        aggregator: Aggregator,
        sink: StatusSink,
        metrics: IngestMetrics,
        clock: Callable[[], float],
        interval: float = 30.0,
        concurrency: int = 8,
        heartbeat_interval: float = 120.0,
        write_budget: float = 20.0,
    ) -> None:
        self._aggregator = aggregator
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._interval = interval
        self._heartbeat_interval = max(interval, heartbeat_interval)
        self._write_budget = write_budget
        # One bucket for the whole fleet; at most one second's budget spent at once.
        self._budget = RateLimiter(write_budget, max(1, math.ceil(write_budget)))
        self._slots = asyncio.Semaphore(concurrency)
        self._tracks: dict[str, _Track] = {}
        self._consistent = sink if isinstance(sink, ConsistentStatusSink) else None
        self.writes = 0
        self.conflicts = 0

    def note(self, agent_id: str) -> None:
        """A report changed ``agent_id``'s state: write now if the policy says so."""
        track = self._tracks.setdefault(agent_id, _Track())
        self._maybe_start(agent_id, track, self._clock())

    async def flush(self, agent_id: str, wait_seconds: float) -> None:
        """Wait until a write that includes the current state has succeeded."""
        track = self._tracks.setdefault(agent_id, _Track())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        track.waiters.append(waiter)
        track.urgent = True
        self._maybe_start(agent_id, track, self._clock())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), wait_seconds)
        except TimeoutError as error:
            raise StatusWriteError("status write timed out") from error
        finally:
            if not waiter.done():  # nobody awaits it any more: the write's failure is logged
                waiter.add_done_callback(_retrieved)

    def tick(self) -> None:
        """Periodic pass: re-evaluate conditions (staleness, trust recovery), flush due."""
        self.tick_agents(list(self._aggregator.agents.items()))

    def tick_agents(self, agents: list[tuple[str, AgentState]]) -> None:
        """:meth:`tick` for some agents (skipping any removed since the list was taken)."""
        now = self._clock()
        current = self._aggregator.agents
        for agent_id, state in agents:
            if current.get(agent_id) is not state:
                continue
            refresh(state, now)
            track = self._tracks.get(agent_id)
            if track is None:
                track = self._tracks[agent_id] = _Track()
            self._maybe_start(agent_id, track, now)

    async def run(self, period: float, chunk: int = TICK_CHUNK) -> None:
        """Tick every ``period`` seconds until cancelled.

        A pass over every agent costs ~10 µs per agent; it runs in slices of ``chunk``
        agents with a yield to the event loop between them, so a large fleet's pass never
        stalls requests for more than one slice (~2 ms).
        """
        while True:
            await asyncio.sleep(period)
            try:
                agents = list(self._aggregator.agents.items())
                for start in range(0, len(agents), chunk):
                    if start:
                        await asyncio.sleep(0)
                    self.tick_agents(agents[start : start + chunk])
            except Exception:  # a bug here must not stop status writes for good
                log.exception("status writer tick failed")

    async def idle(self) -> None:
        """Return once no write is in flight (each finished write may start the next one)."""
        while tasks := [t.task for t in self._tracks.values() if t.task is not None]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel in-flight writes (shutdown)."""
        tasks = [t.task for t in self._tracks.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def forget(self, agent_id: str) -> None:
        """Drop bookkeeping for a deleted agent (waiters fail)."""
        track = self._tracks.pop(agent_id, None)
        if track is not None:
            _resolve(track.waiters, StatusWriteError("agent deleted"))

    def _maybe_start(self, agent_id: str, track: _Track, now: float) -> None:
        if track.task is not None:
            return  # the running write re-checks when it finishes
        state = self._aggregator.agents.get(agent_id)
        if state is None:
            _resolve(track.waiters, StatusWriteError("unknown agent"))
            track.waiters = []
            return
        if now < track.retry_at and not track.waiters:
            return
        dirty = state.version != track.written_version
        urgent = track.urgent or bool(track.waiters)
        # Only read when dirty and not urgent; every signature change bumps the version.
        significant = dirty and not urgent and signature(state) != track.written_signature
        fleet = budget_interval(len(self._aggregator.agents), self._write_budget)
        due = flush_due(
            dirty=dirty,
            urgent=urgent,
            significant=significant,
            last_write=track.last_write,
            now=now,
            interval=max(self._interval, fleet),
            heartbeat_dirty=state.heartbeat_version != track.written_heartbeat_version,
            heartbeat_interval=max(self._heartbeat_interval, fleet),
        )
        if due and not (urgent or significant) and not self._within_budget(now):
            return  # a routine refresh over the fleet's budget: still due, tried again later
        if due:
            track.task = asyncio.get_running_loop().create_task(self._write(agent_id, track, state))

    def _within_budget(self, now: float) -> bool:
        """Spend a token of the fleet's routine-write budget, if there is one (0: none)."""
        return self._write_budget <= 0 or self._budget.take(FLEET, now) is None

    async def _write(self, agent_id: str, track: _Track, state: AgentState) -> None:
        waiters, track.waiters, track.urgent = track.waiters, [], False
        version, sig = state.version, signature(state)
        heartbeat_version = state.heartbeat_version
        try:
            async with self._slots:
                if self._consistent is not None:
                    version, sig, heartbeat_version = await self._write_merged(
                        self._consistent, state
                    )
                else:
                    now = self._clock()
                    code = await self._sink.apply_status(
                        state.config.namespace, state.config.name, encode_status(state, now)
                    )
                    if code >= 300:
                        raise StatusWriteError(f"status write answered {code}")
        except Exception as error:  # any failure: keep dirty, retry later, fail the waiters
            self._metrics.status_writes.labels("error").inc()
            track.retry_at = self._clock() + RETRY_AFTER_ERROR
            log.warning("status write for %s failed: %s", agent_id, error)
            _resolve(waiters, StatusWriteError(str(error)))
        else:
            self.writes += 1
            self._metrics.status_writes.labels("ok").inc()
            track.written_version, track.written_signature = version, sig
            track.written_heartbeat_version = heartbeat_version
            track.last_write = self._clock()
            _resolve(waiters, None)
        finally:
            track.task = None
        if track.waiters or track.urgent:
            self._maybe_start(agent_id, track, self._clock())

    async def _write_merged(
        self, sink: ConsistentStatusSink, state: AgentState
    ) -> tuple[int, tuple[Any, ...], int]:
        """Merge onto the stored status and write it conditionally (see the module docstring).

        Returns the state marks (version, signature, heartbeat version) the written body
        was rendered from.
        """
        namespace, name = state.config.namespace, state.config.name
        snapshot: PendingSnapshot | None = None
        body: dict[str, Any] | None = None
        after: StoredAgent | None = None
        state.writing = True
        try:
            for attempt in range(CONFLICT_ATTEMPTS):
                if state.stored is None or attempt:
                    obj = await sink.read_agent(namespace, name)
                    if obj is None:
                        raise StatusWriteError("status write answered 404")
                    self._aggregator.observe(state, stored_agent(obj), self._clock())
                assert state.stored is not None
                now = self._clock()
                carried = self._aggregator.prepare_write(state, now)
                marks = (state.version, signature(state), state.heartbeat_version)
                rendered = encode_status(state, now)
                result = await sink.apply_status_if(
                    namespace, name, rendered, state.stored.resource_version
                )
                if result.code == 409:
                    self.conflicts += 1
                    self._metrics.status_writes.labels("conflict").inc()
                    await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * (attempt + 1)))
                    continue
                if result.code >= 300:
                    raise StatusWriteError(f"status write answered {result.code}")
                snapshot, body = carried, rendered
                after = stored_agent(result.obj) if result.obj else None
                return marks
            raise StatusWriteError(f"status write conflicted {CONFLICT_ATTEMPTS} times")
        finally:
            state.writing = False
            self._aggregator.after_write(state, snapshot, body, after, self._clock())


def _retrieved(waiter: asyncio.Future[None]) -> None:
    """Mark an abandoned waiter's outcome as seen (else asyncio logs it as an error)."""
    if not waiter.cancelled():
        waiter.exception()


def _resolve(waiters: list[asyncio.Future[None]], error: Exception | None) -> None:
    for waiter in waiters:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
