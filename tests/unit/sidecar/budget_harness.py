"""A real ingest API and real sidecars in one process, for the budget tests (not a test module).

:class:`BudgetWorld` serves the ingest app (:func:`promethios.ingest.app.build_app`) over
a :class:`~promethios.ingest.usagewriter.MemoryUsageStore`, knows one policy with the given
budgets and any number of agents, and starts :class:`~promethios.sidecar.app.Sidecar`
instances wired to it and to the fake model provider of :mod:`sidecar_fakes`. The unit
tests and the adversarial tests (the agent as attacker) share it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from sidecar_fakes import Upstream, write_config

from promethios.api.agent import parse_agent
from promethios.ingest.agents import AgentConfig
from promethios.ingest.app import build_app
from promethios.ingest.budgetcatalog import Owner
from promethios.ingest.service import IngestService
from promethios.ingest.settings import IngestSettings
from promethios.ingest.usagecodec import decode_usage
from promethios.ingest.usagewriter import MemoryUsageStore
from promethios.sidecar.app import Sidecar

NAMESPACE = "team-a"
POLICY = "default"


def agent_body(name: str, policy: str = POLICY, sinks: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": name, "uid": f"uid-{name}"},
        "spec": {
            "image": "agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": policy}},
            "alertSinks": [{"name": sink} for sink in sinks],
        },
    }


@dataclass
class BudgetWorld:
    """One ingest replica (or more, sharing the store), one policy, sidecars on demand."""

    tmp_path: Path
    upstream: Upstream
    spec: dict[str, Any]
    store: MemoryUsageStore = field(default_factory=MemoryUsageStore)
    services: list[IngestService] = field(default_factory=list)
    servers: list[TestServer] = field(default_factory=list)
    sidecars: list[Sidecar] = field(default_factory=list)

    async def start_ingest(self, agents: tuple[str, ...] = ("agent-1",)) -> IngestService:
        """A new ingest replica over the shared store, knowing the policy and ``agents``."""
        settings = IngestSettings(allowance_rate_burst=100_000, allowance_rate_per_second=1e5)
        service = IngestService(settings, _NoStatus(), usage_store=self.store)
        for name in agents:
            service.keystore.add_key(f"key-{name}", f"{NAMESPACE}/{name}", f"gid-{name}")
            service.upsert_agent(AgentConfig(parse_agent(agent_body(name))))
        metadata = {"namespace": NAMESPACE, "name": POLICY, "resourceVersion": "1"}
        service.policy_seen({"metadata": metadata, "spec": self.spec})
        service.ready.set()
        server = TestServer(build_app(service), host="127.0.0.1")
        await server.start_server()
        self.services.append(service)
        self.servers.append(server)
        return service

    async def stop_ingest(self, index: int) -> None:
        await self.servers[index].close()
        await self.services[index].stop()

    def ingest_url(self, index: int = 0) -> str:
        return str(self.servers[index].make_url(""))

    async def sidecar(
        self, agent: str = "agent-1", ingest: int = 0, loops: bool = False, **overrides: Any
    ) -> Sidecar:
        """A sidecar of ``agent`` in a directory of its own (its own spool)."""
        directory = self.tmp_path / f"sidecar-{len(self.sidecars)}"
        directory.mkdir()
        path = write_config(
            directory,
            self.upstream.url,
            self.ingest_url(ingest),
            agentId=f"{NAMESPACE}/{agent}",
            governanceIdentity=f"gid-{agent}",
            policyName=POLICY,
            policy=self.spec,
            **overrides,
        )
        (directory / "api-key").write_text(f"key-{agent}\n")
        sidecar = Sidecar(path, poll_seconds=0.05, backoff_base=0.01, backoff_cap=0.05, loops=loops)
        await sidecar.start(agent_port=0, metrics_port=0)
        self.sidecars.append(sidecar)
        return sidecar

    def usage(self, owner: Owner) -> Any:
        """The ledgers stored on ``owner`` (decoded)."""
        obj = self.store.objects.get(owner)
        return decode_usage(obj["status"].get("usage")) if obj else {}

    async def close(self) -> None:
        for sidecar in self.sidecars:
            await sidecar.stop()
        for server in self.servers:
            await server.close()
        for service in self.services:
            await service.stop()


class _NoStatus:
    """The agents' main status is not what these tests are about."""

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        return 200


async def chat(
    sidecar: Sidecar, max_tokens: int | None = 20, stream: bool = False, **extra: Any
) -> tuple[int, Any, dict[str, str]]:
    """One chat call through the sidecar's proxy: status, parsed body, headers."""
    body: dict[str, Any] = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    body.update(extra)
    url = f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        raw = await response.read()
        data: Any = raw.decode()
        if response.content_type == "application/json":
            data = await response.json()
        return response.status, data, dict(response.headers)


async def calls(sidecar: Sidecar, count: int, **options: Any) -> list[int]:
    """``count`` concurrent calls; their statuses."""
    results = await asyncio.gather(*(chat(sidecar, **options) for _ in range(count)))
    return [status for status, _, _ in results]
