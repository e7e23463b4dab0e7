"""The fleet: one real ``promethios sidecar`` process per agent, and the agents' traffic.

Each :class:`AgentRig` wires its sidecar exactly as the pod would (the operator's
ConfigMap ``config.json`` and CA bundle, the agent's api-key Secret, the provider Secret;
only file paths and ports rewritten, see :func:`promethios_local.demo.run.
local_sidecar_config`) and drives it: a model call every ``call_interval`` seconds, every
other one carrying a blocked pattern. A blocked call answers 403 only after its violation
is in the sidecar's spool (fsync'd), so the 403s counted here are exactly the violations
the sidecar was caused to report: the ground truth. A call whose answer never came is
counted as ``ambiguous`` (the test requires none).

A replaced pod is modelled as Kubernetes runs it: the old pod's agent stops calling, its
sidecar gets SIGTERM and keeps delivering its spool for ``drainSeconds`` (the old pod's
emptyDir lives until then); the new pod's sidecar starts with an empty spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from promethios_local.demo.run import local_sidecar_config, promethios_argv
from promethios_local.localcluster.process import ManagedProcess

BLOCKED_RULE = "blockedPatterns.no-internal-hosts"
MODEL = "gpt-4o-mini"
CALL_TIMEOUT = 60.0


@dataclass
class Wiring:
    """What every sidecar of one agent is started from (read once from the cluster)."""

    config: dict[str, Any]
    ca_bundle: str
    api_key: str
    provider_key: str


class SidecarInstance:
    """One sidecar process (one pod's sidecar container) with its own spool directory."""

    def __init__(self, wiring: Wiring, workdir: Path, ports: tuple[int, int]) -> None:
        workdir.mkdir(parents=True)
        self.workdir = workdir
        self.spool = workdir / "spool"
        self.spool.mkdir()
        self.termination = workdir / "termination-log"
        files = {
            "api_key": workdir / "api-key",
            "credential": workdir / "provider-credential",
            "spool": self.spool,
            "ca": workdir / "ingest-ca.crt",
        }
        files["ca"].write_text(wiring.ca_bundle)
        for name, value in (("api_key", wiring.api_key), ("credential", wiring.provider_key)):
            files[name].write_text(value)
            files[name].chmod(0o600)
        local = local_sidecar_config(wiring.config, files, *ports)
        local["terminationMessagePath"] = str(self.termination)
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(local, indent=2))
        self.url = f"http://127.0.0.1:{ports[0]}"
        argv = promethios_argv("sidecar", f"--config={config_path}")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = ManagedProcess("sidecar", argv, workdir / "sidecar.log", env)

    def spooled(self) -> int:
        """Violations still waiting in this instance's spool."""
        return sum(1 for entry in self.spool.glob("*.json"))

    def summary(self) -> dict[str, Any] | None:
        """The termination summary it left on exit (None while it runs)."""
        if not self.termination.is_file():
            return None
        return dict(json.loads(self.termination.read_text()))


@dataclass
class AgentRig:
    """One governed agent: its sidecars (the live one last) and its ground truth."""

    name: str
    call_interval: float
    sidecars: list[SidecarInstance] = field(default_factory=list)
    #: Where the agent's calls go; None while its pod is being replaced.
    url: str | None = None
    violations_caused: int = 0
    clean_calls: int = 0
    ambiguous: int = 0
    unexpected: list[str] = field(default_factory=list)
    inflight: int = 0

    @property
    def live(self) -> SidecarInstance:
        return self.sidecars[-1]

    async def drive(self, stop: asyncio.Event, session: aiohttp.ClientSession) -> None:
        """Call the live sidecar until ``stop``: a clean call, then a blocked one, and so on."""
        calls = 0
        while not stop.is_set():
            url = self.url
            if url is not None:
                calls += 1
                await self._call(session, url, violating=calls % 2 == 0)
            with contextlib.suppress(TimeoutError):  # the agent's pace, cut short by ``stop``
                await asyncio.wait_for(stop.wait(), self.call_interval)

    async def _call(self, session: aiohttp.ClientSession, url: str, violating: bool) -> None:
        text = "deploy to internal.corp now" if violating else "summarise the weather"
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
        self.inflight += 1
        try:
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                status, answer = response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            self.ambiguous += 1
            self.unexpected.append(f"{'blocked' if violating else 'clean'} call: {error!r}")
            return
        finally:
            self.inflight -= 1
        rule = ((answer or {}).get("error") or {}).get("rule") if status == 403 else None
        if violating and rule == BLOCKED_RULE:
            self.violations_caused += 1
        elif not violating and status == 200:
            self.clean_calls += 1
        else:
            self.unexpected.append(f"{'blocked' if violating else 'clean'} call: {status} {answer}")


async def drive_fleet(rigs: list[AgentRig], stop: asyncio.Event) -> None:
    """Every agent's traffic, until ``stop`` is set."""
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(rig.drive(stop, session) for rig in rigs))


async def ready(url: str) -> bool:
    """Whether a sidecar answers ``/readyz`` with 200."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"{url}/readyz") as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def terminate(instance: SidecarInstance) -> None:
    """SIGTERM, as the kubelet sends a deleted pod's containers: the sidecar drains."""
    instance.process.signal(signal.SIGTERM)
