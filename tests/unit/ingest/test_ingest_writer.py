"""The status writer's periodic pass: sliced so a large fleet never stalls the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from typing import Any

from ingest_fakes import Clock, MemorySink, agent_config, make_service

from promethios.api.wire import HeartbeatReport
from promethios.ingest.codec import rfc3339
from promethios.ingest.service import IngestService
from promethios.ingest.state import AgentState
from promethios.ingest.writer import TICK_CHUNK, StatusWriteError


def fleet(clock: Clock, sink: MemorySink, size: int) -> IngestService:
    service = make_service(clock, sink)  # two agents already
    for i in range(size - 2):
        service.upsert_agent(agent_config("team-b", f"agent-{i}"))
    return service


async def one_pass(service: IngestService, chunk: int) -> None:
    """Run the periodic loop until it has completed one full pass, then stop it."""
    passes = asyncio.Event()
    original = service.writer.tick_agents
    seen: set[str] = set()

    def counting(agents: list[tuple[str, AgentState]]) -> None:
        original(agents)
        seen.update(agent_id for agent_id, _ in agents)
        if len(seen) >= len(service.aggregator.agents):
            passes.set()

    service.writer.tick_agents = counting  # type: ignore[method-assign]
    task = asyncio.create_task(service.writer.run(0.001, chunk))
    try:
        await asyncio.wait_for(passes.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        service.writer.tick_agents = original  # type: ignore[method-assign]


async def test_periodic_pass_yields_to_the_loop_between_slices(
    clock: Clock, sink: MemorySink
) -> None:
    service = fleet(clock, sink, 7)
    loop = asyncio.get_running_loop()
    original = service.writer.tick_agents
    slices: list[tuple[int, int]] = []  # (agents in the slice, callbacks run before it)
    ran: list[int] = []

    def recording(agents: list[tuple[str, Any]]) -> None:
        slices.append((len(agents), len(ran)))
        original(agents)
        loop.call_soon(ran.append, 1)  # runs only if the pass yields before the next slice

    service.writer.tick_agents = recording  # type: ignore[method-assign]
    task = asyncio.create_task(service.writer.run(0.001, chunk=3))
    while len(slices) < 3:  # noqa: ASYNC110 - waiting for the first pass
        await asyncio.sleep(0.001)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [size for size, _ in slices[:3]] == [3, 3, 1]
    assert [before for _, before in slices[:3]] == [0, 1, 2]
    await service.stop()


async def test_pass_marks_stale_agents_like_tick(clock: Clock, sink: MemorySink) -> None:
    service = fleet(clock, sink, 5)
    await service.idle()
    clock.now += 3600  # nobody heartbeats: every agent goes stale
    await one_pass(service, chunk=2)
    conditions = [s.conditions["HeartbeatFresh"] for s in service.aggregator.agents.values()]
    assert [c.reason for c in conditions] == ["HeartbeatStale"] * 5
    await service.stop()


async def test_agents_removed_mid_pass_are_skipped(clock: Clock, sink: MemorySink) -> None:
    service = fleet(clock, sink, 6)
    await service.idle()
    removed = "team-b/agent-3"
    original = service.writer.tick_agents
    slices = 0
    passed = asyncio.Event()

    def removing(agents: list[tuple[str, AgentState]]) -> None:
        nonlocal slices
        original(agents)
        if removed in service.aggregator.agents:  # deleted while the pass is under way
            service.remove_agent(removed)
        slices += 1
        if slices >= 6:  # two whole passes of three slices
            passed.set()

    service.writer.tick_agents = removing  # type: ignore[method-assign]
    task = asyncio.create_task(service.writer.run(0.001, chunk=2))
    await asyncio.wait_for(passed.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert removed not in service.writer._tracks  # not resurrected by the rest of the pass
    await service.stop()


def budgeted_fleet(
    clock: Clock, sink: MemorySink, size: int, budget: float
) -> tuple[IngestService, Callable[[], None]]:
    """``size`` agents refreshed at most once a second each, within a fleet ``budget``;
    and a function that sends every one of them a heartbeat."""
    service = make_service(
        clock, sink, heartbeat_flush_seconds=1.0, flush_interval_seconds=1.0,
        write_budget_per_second=budget,
    )  # fmt: skip
    for i in range(size - 2):
        service.upsert_agent(agent_config("team-b", f"agent-{i}"))
    report = HeartbeatReport.model_validate(
        {"agentId": "x/y", "status": "active", "uptime": 1, "lastActivity": "2024-01-01T00:00:00Z"}
    )

    def beat_all() -> None:
        for state in service.aggregator.agents.values():
            service.heartbeat(state, report, None)

    return service, beat_all


def test_default_slice_is_small() -> None:
    assert 50 <= TICK_CHUNK <= 500


async def test_routine_refreshes_share_a_fleet_wide_write_budget(
    clock: Clock, sink: MemorySink
) -> None:
    """200 agents heartbeating every second: without the budget each would refresh every
    second (200 writes/s); with 10/s the fleet never exceeds it, and every agent is still
    refreshed within agents / budget seconds."""
    fleet_size = 200
    service, beat_all = budgeted_fleet(clock, sink, fleet_size, 10.0)

    beat_all()  # the first heartbeat flips HeartbeatFresh: written at once, not budgeted
    await service.idle()
    start, refreshed_at = sink.writes, clock.now
    last_written: dict[str, dict[str, Any]] = {}
    seconds = 40
    for _ in range(seconds):
        clock.now += 1
        beat_all()
        service.writer.tick()
        await service.idle()
        last_written.update(sink.last)
    routine = sink.writes - start
    assert routine <= 10 * seconds + 10, routine  # the budget, plus one burst of slack
    assert routine >= 10 * (seconds - fleet_size / 10) - 10, routine  # and it is used
    stale_after = fleet_size / 10 + 1  # agents / budget, plus a tick
    for status in last_written.values():
        heard = status["heartbeat"]["lastHeartbeat"]
        assert heard >= rfc3339(clock.now - stale_after), status["heartbeat"]
    assert refreshed_at < clock.now


class BlockedSink(MemorySink):
    """A sink whose writes hang until released, then fail (an API server going away)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.code = 503

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        await self.release.wait()
        return await super().apply_status(namespace, name, status)


async def test_a_write_that_fails_after_its_waiter_gave_up_logs_no_unretrieved_error(
    clock: Clock,
) -> None:
    """Found by the chaos suite: a report whose flush timed out left its waiter to fail
    later unobserved, and asyncio logged "Future exception was never retrieved" as an ERROR
    for every such report while the API server was down."""
    sink = BlockedSink()
    service = make_service(clock, sink)
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
    # pytest keeps log records, and the failed write's record (its error's traceback) would
    # keep the waiter from being collected: the writer's records stay out of the capture.
    writer_log = logging.getLogger("promethios.ingest.writer")
    writer_log.propagate = False
    try:
        agent_id = next(iter(service.aggregator.agents))
        track = service.writer._tracks[agent_id]
        timed_out = False
        try:  # not pytest.raises: its traceback would keep the waiter from being collected
            await service.writer.flush(agent_id, 0.01)
        except StatusWriteError:
            timed_out = True
        assert timed_out
        sink.release.set()  # the write under way fails; the retry (the waiter's) too
        await asyncio.wait_for(_until(lambda: bool(sink.writes_of) and track.task is None), 5)
        clock.now += 60  # past the retry pause
        service.writer.note(agent_id)
        writes = lambda: sink.writes_of.get(agent_id, 0)  # noqa: E731
        await asyncio.wait_for(_until(lambda: writes() > 1 and track.task is None), 5)
        gc.collect()  # an unretrieved exception is reported when its future is collected
        assert reported == []
    finally:
        writer_log.propagate = True
        loop.set_exception_handler(None)
        await service.stop()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 - polled under the caller's wait_for deadline
        await asyncio.sleep(0.001)


async def test_agents_that_come_due_together_are_still_held_to_the_budget(
    clock: Clock, sink: MemorySink
) -> None:
    """200 agents first written in the same second come due for a refresh in the same
    second too (agents / budget later): the fleet-wide bucket spreads them out, so no
    second carries more than the budget, and none is starved."""
    budget, fleet_size = 10.0, 200
    service, beat_all = budgeted_fleet(clock, sink, fleet_size, budget)
    beat_all()  # a transition each: written at once
    await service.idle()
    first = dict(sink.writes_of)
    assert len(first) == fleet_size
    per_second: list[int] = []
    for _ in range(60):
        clock.now += 1
        before = sink.writes
        beat_all()
        service.writer.tick()
        await service.idle()
        per_second.append(sink.writes - before)
    assert max(per_second) <= budget, per_second  # the first refreshes all fell due at 20 s
    assert sum(per_second) >= budget * (60 - fleet_size / budget) - budget, per_second
    refreshed = [agent for agent, count in sink.writes_of.items() if count > first[agent]]
    assert len(refreshed) == fleet_size  # every agent refreshed since, none starved
