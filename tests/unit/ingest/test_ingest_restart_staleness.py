"""Staleness across an ingest restart: a replica that starts (or restarts) marks stale, at
once, the agents whose stored last heartbeat is older than their stale window; the window of
a fresh one counts from that stored heartbeat, not from the start; an agent that never sent
one counts from its creation. The clock is injected; the stored objects are what the
API server would hand the replica's first listing.
"""

from __future__ import annotations

from typing import Any

from ingest_fakes import Clock, MemoryEvents, MemorySink, agent_config

from promethios.ingest.codec import rfc3339
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings
from promethios.ingest.state import stored_agent

NS = "team-a"
CONFIG = agent_config(NS, "support-bot")
AGENT = CONFIG.agent_id
WINDOW = CONFIG.stale_after


def condition(status: str, reason: str, since: float) -> dict[str, Any]:
    return {
        "type": "HeartbeatFresh",
        "status": status,
        "reason": reason,
        "message": "as the previous replica wrote it",
        "lastTransitionTime": rfc3339(since),
    }


def listed(created: float, heartbeat: float | None, fresh: dict[str, Any]) -> Any:
    """The agent as the restarted replica's first listing returns it."""
    status: dict[str, Any] = {"conditions": [fresh]}
    if heartbeat is not None:
        status["heartbeat"] = {"state": "active", "lastHeartbeat": rfc3339(heartbeat)}
    body = {
        "metadata": {
            "namespace": NS,
            "name": "support-bot",
            "resourceVersion": "41",
            "creationTimestamp": rfc3339(created),
        },
        "status": status,
    }
    return stored_agent(body)


def restarted(clock: Clock, sink: MemorySink) -> IngestService:
    return IngestService(IngestSettings(), sink, event_sink=MemoryEvents(), clock=clock)


def fresh_condition(service: IngestService) -> tuple[str, str]:
    state = service.aggregator.agents[AGENT].conditions["HeartbeatFresh"]
    return state.status, state.reason


def written_condition(sink: MemorySink) -> str:
    conditions = sink.last[AGENT]["conditions"]
    return str(next(c["status"] for c in conditions if c["type"] == "HeartbeatFresh"))


async def test_an_agent_silent_since_before_the_restart_is_marked_stale_at_once(
    clock: Clock, sink: MemorySink
) -> None:
    start = clock.now
    last = start - WINDOW - 30  # went silent while no replica was running
    service = restarted(clock, sink)
    service.upsert_agent(CONFIG, stored=listed(last - 3600, last, condition("True", "x", last)))
    assert fresh_condition(service) == ("False", "HeartbeatStale")
    await service.idle()  # written at once: a transition, not a heartbeat-only refresh
    assert sink.writes_of.get(AGENT) == 1 and written_condition(sink) == "False"
    await service.stop()


async def test_a_fresh_agents_window_counts_from_its_stored_heartbeat(
    clock: Clock, sink: MemorySink
) -> None:
    start = clock.now
    last = start - 10
    service = restarted(clock, sink)
    service.upsert_agent(CONFIG, stored=listed(last - 3600, last, condition("True", "x", last)))
    assert fresh_condition(service) == ("True", "HeartbeatReceived")
    clock.now = last + WINDOW - 1
    service.writer.tick()
    assert fresh_condition(service)[0] == "True"
    clock.now = last + WINDOW + 1  # 10 s before a window after the restart would end
    service.writer.tick()
    assert fresh_condition(service) == ("False", "HeartbeatStale")
    await service.idle()
    assert written_condition(sink) == "False"
    await service.stop()


async def test_an_agent_that_never_sent_a_heartbeat_counts_from_its_creation(
    clock: Clock, sink: MemorySink
) -> None:
    start = clock.now
    old = start - 2 * WINDOW
    stale = condition("False", "HeartbeatStale", old + WINDOW)
    service = restarted(clock, sink)
    service.upsert_agent(CONFIG, stored=listed(old, None, stale))
    # Stays stale (it does not fall back to "awaiting" for another window) ...
    assert fresh_condition(service) == ("False", "HeartbeatStale")
    await service.idle()
    assert written_condition(sink) == "False"  # ... nor is "awaiting" ever written
    other = agent_config(NS, "new-bot")
    awaiting = condition("Unknown", "AwaitingHeartbeat", start - 5)
    body = listed(start - 5, None, awaiting)
    service.upsert_agent(other, stored=body)
    state = service.aggregator.agents[other.agent_id].conditions["HeartbeatFresh"]
    assert (state.status, state.reason) == ("Unknown", "AwaitingHeartbeat")
    clock.now = start - 5 + WINDOW + 1
    service.writer.tick()
    state = service.aggregator.agents[other.agent_id].conditions["HeartbeatFresh"]
    assert (state.status, state.reason) == ("False", "HeartbeatStale")
    await service.stop()
