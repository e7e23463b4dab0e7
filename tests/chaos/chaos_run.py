"""One chaos run: the operator, the ingest gate, the fleet, and the fault schedule.

:class:`ChaosRun` sets up (a namespace, a policy with a blocked pattern, N GovernedAgents
on kwok pods, one real sidecar per agent reporting through the :class:`~chaos_gate.
IngestGate`), then plays :meth:`~chaos_plan.ChaosPlan.faults` while the agents call their
sidecars: the operator (with its in-process ingest API) SIGKILLed and restarted at once,
kube-apiserver and etcd SIGKILLed and restarted (:meth:`LocalCluster.restart`), the gate
shut for the outage while some agents' pods are deleted and their sidecars replaced. The
agents stop calling when the last fault is over; :mod:`chaos_checks` then measures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from chaos_fleet import AgentRig, SidecarInstance, Wiring, drive_fleet, ready, terminate
from chaos_gate import IngestGate, LoopThread
from chaos_plan import ChaosPlan

from promethios.api.sidecarconfig import CONFIG_KEY
from promethios.builders.sidecar import CA_BUNDLE_KEY
from promethios_local.demo.run import promethios_argv
from promethios_local.demo.upstream import UpstreamLog, build_upstream_app
from promethios_local.localcluster import LocalCluster, free_ports
from promethios_local.localcluster.cluster import APISERVER, ETCD
from promethios_local.localcluster.process import ManagedProcess

API_VERSION = "governance.promethios.ai/v1alpha1"
NAMESPACE, SYSTEM_NAMESPACE = "chaos", "chaos-system"
PROVIDER_SECRET, PROVIDER_KEY = "provider", "sk-chaos-provider-credential"
#: Sidecars started at once (each costs a second or so of CPU to import).
START_BATCH = 10


def poll(predicate: Callable[[], Any], what: str, timeout: float, interval: float = 0.5) -> Any:
    """Poll until ``predicate`` is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


@dataclass
class FaultRecord:
    """A fault as it happened: when (seconds into the phase) and for how long."""

    kind: str
    at: float
    seconds: float


@dataclass
class ChaosRun:
    """Everything one run starts, in start order; :meth:`close` stops it all."""

    cluster: LocalCluster
    plan: ChaosPlan
    workdir: Path
    rigs: list[AgentRig] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)  # agent -> its old pod's uid
    #: When (monotonic) the last fault was over.
    ended: float = 0.0

    def __post_init__(self) -> None:
        (self.ingest_port, self.metrics_port, self.gate_port, self.upstream_port) = free_ports(4)
        self.loop = LoopThread("chaos-loop")
        self.gate = IngestGate(self.gate_port, self.ingest_port)
        self.upstream_log = UpstreamLog()
        self._upstream: web.AppRunner | None = None
        self.operator = ManagedProcess(
            "operator", self._operator_argv(), self.workdir / "operator.log",
            dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        self._wirings: dict[str, Wiring] = {}

    # -- kubectl -----------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """kubectl in the run's namespace; patient (a loaded 2-core machine, 100 objects)."""
        return self.cluster.kubectl("-n", NAMESPACE, *args, input=input, timeout=300).stdout

    def items(self, kinds: str) -> list[dict[str, Any]]:
        """The objects of ``kinds`` (e.g. ``ga`` or ``deploy,svc``) in the namespace."""
        return list(json.loads(self.kubectl("get", kinds, "-o", "json"))["items"])

    # -- set-up ------------------------------------------------------------------------

    def _operator_argv(self) -> list[str]:
        return promethios_argv(
            "operator",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--ingest-port={self.ingest_port}",
            f"--ingest-metrics-port={self.metrics_port}",
            # The sidecars report through the gate; the certificate names 127.0.0.1.
            f"--ingest-url=https://127.0.0.1:{self.gate_port}",
            f"--tls-secret-namespace={SYSTEM_NAMESPACE}",
            "--liveness-port=0",
        )

    def setup(self) -> None:
        for ns in (NAMESPACE, SYSTEM_NAMESPACE):
            self.cluster.kubectl("create", "namespace", ns)
        self.kubectl("create", "secret", "generic", PROVIDER_SECRET,
                     f"--from-literal=apiKey={PROVIDER_KEY}")  # fmt: skip
        self.loop.start()
        self.loop.run(self._start_upstream())
        self.loop.run(self.gate.open())
        self.operator.start()
        poll(self._operator_ready, "the operator's ingest API to be ready", 90)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(self._manifests()))
        patience = 60 + 2 * self.plan.agents
        poll(lambda: self._ready_agents() == self.plan.agents, "every agent Ready", patience, 1)
        self._read_wirings()
        self.rigs = [AgentRig(name, self.plan.call_interval) for name in self._agent_names()]
        self._start_sidecars(self.rigs)
        poll(self._all_beating, "every agent's first heartbeat in its status", patience, 1)

    async def _start_upstream(self) -> None:
        self._upstream = web.AppRunner(build_upstream_app(self.upstream_log), access_log=None)
        await self._upstream.setup()
        await web.TCPSite(self._upstream, "127.0.0.1", self.upstream_port).start()

    def _operator_ready(self) -> bool:
        code = self.operator.exit_code()
        assert code is None, f"the operator exited ({code}):\n{self.operator.log_tail(60)}"
        return self.loop.run(ready(f"http://127.0.0.1:{self.metrics_port}"))

    def _agent_names(self) -> list[str]:
        return [f"agent-{i:03d}" for i in range(self.plan.agents)]

    def _manifests(self) -> list[dict[str, Any]]:
        policy = {
            "apiVersion": API_VERSION, "kind": "GovernancePolicy",
            "metadata": {"name": "policy", "namespace": NAMESPACE},
            "spec": {"blockedPatterns": [
                {"name": "no-internal-hosts", "pattern": r"\binternal\.corp\b"}
            ]},
        }  # fmt: skip
        spec = {
            "image": "registry.example/agent:1",
            "modelProvider": {
                "type": "custom",
                "baseUrl": f"http://127.0.0.1:{self.upstream_port}/v1",
                "credentialsSecretRef": {"name": PROVIDER_SECRET, "key": "apiKey"},
            },
            "governance": {
                "policyRef": {"name": "policy"},
                "mode": "enforce",
                "trustThreshold": 0.0,  # only the violations: no trust breach to act on
                "heartbeatIntervalSeconds": self.plan.heartbeat_seconds,
                "missedHeartbeatsBeforeStale": 5,
                "onBreach": "Alert",
            },
            "sidecar": {"drainSeconds": self.plan.drain_seconds},
        }
        agents = [
            {"apiVersion": API_VERSION, "kind": "GovernedAgent",
             "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}
            for name in self._agent_names()
        ]  # fmt: skip
        return [policy, *agents]

    def _ready_agents(self) -> int:
        return sum(1 for agent in self.items("ga") if condition(agent, "Ready") == "True")

    def _read_wirings(self) -> None:
        objects = {(o["kind"], o["metadata"]["name"]): o for o in self.items("cm,secret")}

        def secret(name: str, key: str) -> str:
            return base64.b64decode(objects["Secret", name]["data"][key]).decode()

        for name in self._agent_names():
            data = objects["ConfigMap", f"{name}-governance"]["data"]
            self._wirings[name] = Wiring(
                json.loads(data[CONFIG_KEY]), data[CA_BUNDLE_KEY],
                secret(f"{name}-api-key", "apiKey"), secret(PROVIDER_SECRET, "apiKey"),
            )  # fmt: skip

    def _start_sidecars(self, rigs: list[AgentRig]) -> None:
        """Start a new sidecar for each rig, :data:`START_BATCH` at a time; wait until ready."""
        for start in range(0, len(rigs), START_BATCH):
            self._start_batch(rigs[start : start + START_BATCH])

    def _start_batch(self, rigs: list[AgentRig]) -> None:
        for rig in rigs:
            workdir = self.workdir / rig.name / f"pod-{len(rig.sidecars)}"
            # Chosen just before the start, not at set-up: minutes later an outgoing
            # connection may hold a port chosen then as its source port (EADDRINUSE).
            proxy_port, metrics_port = free_ports(2)
            ports = (proxy_port, metrics_port)
            rig.sidecars.append(SidecarInstance(self._wirings[rig.name], workdir, ports))
            rig.live.process.start()
        for rig in rigs:
            poll(lambda rig=rig: self._sidecar_ready(rig), f"{rig.name}'s sidecar ready", 60)
            rig.url = rig.live.url

    def _sidecar_ready(self, rig: AgentRig) -> bool:
        code = rig.live.process.exit_code()
        assert code is None, f"{rig.name}'s sidecar exited ({code}):\n{rig.live.process.log_tail()}"
        return self.loop.run(ready(rig.live.url))

    def _all_beating(self) -> bool:
        beating = [a for a in self.items("ga") if condition(a, "HeartbeatFresh") == "True"]
        return len(beating) == self.plan.agents

    # -- the fault phase ---------------------------------------------------------------

    def play(self) -> None:
        """Drive the fleet through every fault; the traffic stops when the last is over."""
        stop = asyncio.Event()
        traffic = self.loop.submit(drive_fleet(self.rigs, stop))
        began = time.monotonic()
        actions = {
            "operator-kill": self._kill_operator,
            "apiserver": lambda: self.cluster.restart(APISERVER),
            "etcd": self._restart_etcd,
            "outage-start": lambda: self.loop.run(self.gate.close()),
            "replace-pods": self._replace_pods,
            "outage-end": lambda: self.loop.run(self.gate.open()),
        }
        try:
            for fault in self.plan.faults():
                self._until(began + fault.at, traffic)
                started = time.monotonic()
                actions[fault.kind]()
                self.faults.append(
                    FaultRecord(fault.kind, started - began, time.monotonic() - started)
                )
            self.ended = time.monotonic()
        finally:
            self.loop.loop.call_soon_threadsafe(stop.set)
            traffic.result(timeout=120)

    def _until(self, moment: float, traffic: Any) -> None:
        """Wait for the next fault's time, failing at once if a process died meanwhile."""
        while (left := moment - time.monotonic()) > 0:
            if traffic.done():
                traffic.result()  # the traffic failed: raise its error
            self.cluster.check_running()
            time.sleep(min(left, 0.5))

    def _restart_etcd(self) -> None:
        """Restart etcd; over once the API server answers ready again (it reconnects)."""
        self.cluster.restart(ETCD)
        poll(self._apiserver_ready, "the API server ready after the etcd restart", 60, 0.2)

    def _apiserver_ready(self) -> bool:
        answer = self.cluster.kubectl("get", "--raw=/readyz", check=False, timeout=10)
        return answer.returncode == 0 and answer.stdout.strip() == "ok"

    def _kill_operator(self) -> None:
        self.operator.kill()  # SIGKILL: the in-process ingest API dies with it
        self.operator.start()

    def _replace_pods(self) -> None:
        """Delete some agents' pods; each old sidecar drains, a new one starts empty."""
        chosen = self.rigs[: self.plan.replaced_pods]
        names = {rig.name for rig in chosen}
        for pod in self.items("pods"):
            agent = pod["metadata"].get("labels", {}).get("promethios.ai/agent")
            if agent in names:
                self.replaced[agent] = pod["metadata"]["uid"]
        selector = f"promethios.ai/agent in ({','.join(sorted(names))})"
        self.kubectl("delete", "pods", "-l", selector, "--wait=false")
        for rig in chosen:
            rig.url = None  # the old pod's agent stops calling
        poll(lambda: all(rig.inflight == 0 for rig in chosen), "calls in flight", 90, 0.1)
        for rig in chosen:
            terminate(rig.live)
        self._start_sidecars(chosen)

    def diagnosis(self) -> str:
        """What a failed run's reader needs first: the operator's state and its last words."""
        alive = "running" if self.operator.running() else f"exited {self.operator.exit_code()}"
        answers = self.loop.run(ready(f"http://127.0.0.1:{self.metrics_port}"))
        return (
            f"operator {alive}, ingest /readyz {'ok' if answers else 'not answering'}, "
            f"gate {'open' if self.gate.is_open else 'shut'} ({self.gate.connections} "
            f"connections piped); operator log tail:\n{self.operator.log_tail(30)}"
        )

    # -- tear-down ---------------------------------------------------------------------

    def close(self) -> None:
        sidecars = [s.process for rig in self.rigs for s in rig.sidecars]
        for process in [self.operator, *sidecars]:
            process.kill()
        if self._upstream is not None:
            self.loop.run(self._upstream.cleanup())
        self.loop.run(self.gate.close())
        self.loop.stop()


def condition(obj: dict[str, Any], ctype: str) -> str | None:
    """The status (``True``/``False``/``Unknown``) of one condition, None if absent."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == ctype:
            return str(item.get("status"))
    return None
