"""Fakes for the ingest unit tests: a clock, in-memory status and event sinks, a service,
and a resourceVersioned store that several ingest replicas share."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

from promethios.api.agent import parse_agent
from promethios.api.policy import TrustScoring
from promethios.ingest.agents import AgentConfig
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings
from promethios.ingest.state import stored_agent
from promethios.ingest.writer import WriteResult

AGENT = "team-a/support-bot"
IDENTITY = "gid-1234"
KEY = "k" * 40
OTHER_KEY = "o" * 40


def agent_config(
    namespace: str,
    name: str,
    *,
    alert_sinks: tuple[str, ...] = (),
    scoring: TrustScoring | None = None,
    **governance: Any,
) -> AgentConfig:
    """An :class:`AgentConfig` parsed from a GovernedAgent body, as the watch feeds it.

    ``governance`` holds ``spec.governance`` fields in snake_case (``on_breach="Suspend"``);
    everything not given takes the model's default.
    """
    body = {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}"},
        "spec": {
            "image": "agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": "policy"}, **governance},
            "alertSinks": [{"name": sink} for sink in alert_sinks],
        },
    }
    agent = parse_agent(body)
    return AgentConfig(agent, scoring) if scoring is not None else AgentConfig(agent)


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
        self.writes_of: dict[str, int] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.code = 200

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        self.writes += 1
        self.writes_of[f"{namespace}/{name}"] = self.writes_of.get(f"{namespace}/{name}", 0) + 1
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
    service.upsert_agent(agent_config("team-a", "support-bot"))
    service.upsert_agent(agent_config("team-a", "other"))
    service.ready.set()
    return service


class FakeApiServer:
    """One GovernedAgent store with resourceVersions, shared by several ingest replicas.

    ``apply_status_if`` pauses ``delay`` seconds before its atomic compare-and-write, so
    replicas that render concurrently race like they would against a real API server.
    Replicas registered with :meth:`watch` hear of every write (a watch event).
    """

    def __init__(self, clock: Clock, delay: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay
        self.rv = 1
        self.objects: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.conflicts = 0
        self.watchers: list[tuple[IngestService, AgentConfig]] = []

    def add(self, namespace: str, name: str, acknowledged: int = 0) -> None:
        self.rv += 1
        self.objects[f"{namespace}/{name}"] = {
            "metadata": {"namespace": namespace, "name": name, "resourceVersion": str(self.rv)},
            "spec": {"governance": {"acknowledgedBreach": acknowledged}},
            "status": {},
        }

    def acknowledge(self, agent_id: str, breach: int) -> None:
        obj = self.objects[agent_id]
        obj["spec"]["governance"]["acknowledgedBreach"] = breach
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def watch(self, service: IngestService, config: AgentConfig) -> None:
        self.watchers.append((service, config))

    def status(self, agent_id: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[agent_id]["status"])

    def sink(self) -> ApiSink:
        return ApiSink(self)


class ApiSink:
    """A replica's view of :class:`FakeApiServer` (a :class:`ConsistentStatusSink`)."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.code = 200

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        raise AssertionError("replicas write conditionally")

    async def apply_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> WriteResult:
        server = self.server
        if server.delay:
            await asyncio.sleep(server.delay)
        if self.code >= 300:
            return WriteResult(self.code)
        obj = server.objects.get(f"{namespace}/{name}")
        if obj is None:
            return WriteResult(404)
        if obj["metadata"]["resourceVersion"] != resource_version:
            server.conflicts += 1
            return WriteResult(409)
        server.rv += 1
        server.writes += 1
        obj["metadata"]["resourceVersion"] = str(server.rv)
        written_at = datetime.fromtimestamp(int(server.clock()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj["metadata"]["managedFields"] = [
            {"manager": "promethios-ingest", "subresource": "status", "time": written_at}
        ]
        obj["status"] = {**obj["status"], **copy.deepcopy(status)}
        snapshot = copy.deepcopy(obj)
        for service, config in server.watchers:
            event = copy.deepcopy(snapshot)
            asyncio.get_running_loop().call_soon(
                lambda s=service, c=config, e=event: s.upsert_agent(c, stored=stored_agent(e))
            )
        return WriteResult(200, snapshot)

    async def read_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.server.objects.get(f"{namespace}/{name}")
        return copy.deepcopy(obj) if obj is not None else None
