"""Fakes for the ingest unit tests: a clock, in-memory status and event sinks, a service."""

from __future__ import annotations

from typing import Any

from promethios.ingest.aggregate import AgentConfig
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings

AGENT = "team-a/support-bot"
IDENTITY = "gid-1234"
KEY = "k" * 40
OTHER_KEY = "o" * 40


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemorySink:
    """Counts status writes and keeps the last body per agent."""

    def __init__(self) -> None:
        self.writes = 0
        self.last: dict[str, dict[str, Any]] = {}
        self.code = 200

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        self.writes += 1
        if self.code < 300:
            self.last[f"{namespace}/{name}"] = status
        return self.code


class MemoryEvents:
    """Records Events."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    async def create_event(self, namespace: str, body: dict[str, Any]) -> int:
        self.created.append(body)
        return 201

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> int:
        self.patched.append((name, patch))
        return 200


def headers(key: str = KEY, agent: str = AGENT, identity: str = IDENTITY) -> dict[str, str]:
    """Valid request headers."""
    return {"Authorization": f"Bearer {key}", "X-Agent-ID": agent, "X-Governance-ID": identity}


def make_service(clock: Clock, sink: MemorySink, **overrides: Any) -> IngestService:
    """A service with one known agent and its key (plus a second agent)."""
    settings = IngestSettings(read_token="read-secret", **overrides)
    service = IngestService(settings, sink, event_sink=MemoryEvents(), clock=clock)
    service.keystore.add_key(KEY, AGENT, IDENTITY)
    service.keystore.add_key(OTHER_KEY, "team-a/other", "gid-other")
    service.upsert_agent(AgentConfig("team-a", "support-bot", IDENTITY))
    service.upsert_agent(AgentConfig("team-a", "other", "gid-other"))
    service.ready.set()
    return service
