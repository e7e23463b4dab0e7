"""Budgets on a real API server: the limit holds across replicas, agents and restarts.

One ``promethios operator`` (with its in-process ingest over TLS) serves four namespaces;
sidecars are real ``promethios sidecar`` processes wired from the operator's ConfigMap and
Secrets (as :mod:`test_governance_flow` wires them), in front of the local fake provider,
which charges 4 tokens for every call these tests make. A webhook receiver on this
machine stands in for an AlertSink (the operator allows 127.0.0.1/32 for it).

- two replicas of one agent, racing, spend at most the agent's budget;
- two agents sharing a team budget (scope Policy) spend at most that budget, kept on the
  GovernancePolicy;
- killing a sidecar, restarting the ingest (the operator) and a rollout (a policy change:
  new pods from the new ConfigMap) reset nothing: the limit holds over all of them;
- the 80 % alert reaches the AlertSink once, however many replicas race past it.

The calls state ``max_tokens``, so the documented overshoot is zero: every figure must be
within the limit itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kube_helpers
import pytest
from aiohttp import web
from deploy_helpers import Upstream
from kube_helpers import free_port
from test_governance_flow import (
    API_VERSION,
    LOGS,
    PROVIDER_KEY,
    PROVIDER_SECRET,
    Kube,
    Operator,
    Sidecar,
    write_secret_file,
)

from promethios.api.sidecarconfig import CONFIG_KEY
from promethios_local.demo.run import local_sidecar_config

pytestmark = pytest.mark.usefixtures("crds_installed")

PURPOSES = ("replicas", "team", "restarts", "alert")
TOKENS_PER_CALL = 4  # the fake provider: 1 prompt token ("hi") + 3 ("You said: hi")
WAIT = 60.0
wait_for = functools.partial(kube_helpers.wait_for, timeout=WAIT, interval=0.3)


class Receiver:
    """An AlertSink's webhook receiver on this machine, in a thread of its own."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)

    def _run(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def budget_alerts(self, threshold: int) -> list[dict[str, Any]]:
        return [
            b
            for b in list(self.bodies)
            if b.get("kind") == "BudgetThreshold" and b["budget"]["threshold"] == threshold
        ]


@dataclass
class Env:
    cluster: Any
    operator: Operator
    upstream: Upstream
    receiver: Receiver
    namespaces: dict[str, str]


@pytest.fixture(scope="module")
def env(cluster: Any, crds_installed: list[str], tmp_path_factory: Any) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:6]
    namespaces = {purpose: f"t-budget-{purpose}-{suffix}" for purpose in PURPOSES}
    system_ns = f"t-budget-system-{suffix}"
    upstream, receiver = Upstream(), Receiver()
    operator: Operator | None = None
    try:
        cluster.kubectl("create", "namespace", system_ns)
        for ns in namespaces.values():
            cluster.kubectl("create", "namespace", ns)
            cluster.kubectl(
                "-n",
                ns,
                "create",
                "secret",
                "generic",
                PROVIDER_SECRET,
                f"--from-literal=apiKey={PROVIDER_KEY}",
            )
        upstream.start()
        receiver.start()
        log_path = tmp_path_factory.mktemp("budget-operator") / "operator.log"
        LOGS.append(log_path)
        operator = Operator(
            cluster,
            list(namespaces.values()),
            system_ns,
            log_path,
            ("--alert-sink-allow-cidr=127.0.0.1/32",),
        )
        operator.start()
        yield Env(cluster, operator, upstream, receiver, namespaces)
    finally:
        if operator is not None:
            operator.process.stop(timeout=15)
        upstream.stop()
        receiver.stop()
        cluster.kubectl(
            "delete", "namespace", "--wait=false", system_ns, *namespaces.values(), check=False
        )


@dataclass
class Team:
    """One test's namespace: its objects and the sidecars it started."""

    env: Env
    kube: Kube
    workdir: Path
    sidecars: list[Sidecar] = field(default_factory=list)

    def policy(self, name: str, budgets: list[dict[str, Any]], **spec: Any) -> None:
        self.kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "GovernancePolicy",
                "metadata": {"name": name, "namespace": self.kube.ns},
                "spec": {"budgets": budgets, **spec},
            }
        )

    def agent(self, name: str, policy: str, replicas: int = 1, sinks: tuple[str, ...] = ()) -> None:
        spec = {
            "image": "registry.example/agent:1",
            "replicas": replicas,
            "modelProvider": {
                "type": "custom",
                "baseUrl": self.env.upstream.url,
                "credentialsSecretRef": {"name": PROVIDER_SECRET, "key": "apiKey"},
            },
            "governance": {
                "policyRef": {"name": policy},
                "trustThreshold": 0.0,
                "heartbeatIntervalSeconds": 1,
                "missedHeartbeatsBeforeStale": 10,
            },
            "alertSinks": [{"name": sink} for sink in sinks],
        }
        self.kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "GovernedAgent",
                "metadata": {"name": name, "namespace": self.kube.ns},
                "spec": spec,
            }
        )
        self.kube.run("wait", "--for=condition=Ready", f"governedagent/{name}", "--timeout=60s")

    def sidecar(self, agent: str) -> Sidecar:
        """A sidecar process of ``agent``, wired from its ConfigMap and Secrets as a pod's."""
        configmap = self.kube.get("configmap", f"{agent}-governance")
        assert configmap is not None
        config = json.loads(configmap["data"][CONFIG_KEY])
        workdir = self.workdir / f"sidecar-{len(self.sidecars)}"
        workdir.mkdir()
        files = {
            "api_key": workdir / "api-key",
            "credential": workdir / "provider",
            "spool": workdir / "spool",
            "ca": workdir / "ingest-ca.crt",
        }
        files["spool"].mkdir()
        files["ca"].write_text(configmap["data"]["ca.crt"])
        write_secret_file(files["api_key"], self.kube.secret(f"{agent}-api-key", "apiKey"))
        write_secret_file(files["credential"], self.kube.secret(PROVIDER_SECRET, "apiKey"))
        local = local_sidecar_config(config, files, free_port(), free_port())
        path = workdir / "config.json"
        path.write_text(json.dumps(local))
        sidecar = Sidecar(
            workdir,
            path,
            files["api_key"],
            files["spool"],
            local["proxyPort"],
            local["metricsPort"],
            local,
            files["ca"],
        )
        self.sidecars.append(sidecar)
        sidecar.start()
        return sidecar

    def usage(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.kube.get(kind, name) or {}
        budgets = ((obj.get("status") or {}).get("usage") or {}).get("budgets") or []
        return {entry["name"]: entry for entry in budgets}

    def calls_made(self) -> int:
        return len(self.env.upstream.log.paths)


def burst(sidecars: list[Sidecar], count: int) -> list[int]:
    """``count`` concurrent calls, spread over ``sidecars``; their HTTP statuses."""

    async def one(session: aiohttp.ClientSession, sidecar: Sidecar) -> int:
        body = {
            "model": "gpt-4o-mini",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with session.post(f"{sidecar.url}/v1/chat/completions", json=body) as response:
            await response.read()
            return response.status

    async def run() -> list[int]:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return list(
                await asyncio.gather(
                    *(one(session, sidecars[i % len(sidecars)]) for i in range(count))
                )
            )

    return asyncio.run(run())


def _team(env: Env, purpose: str, tmp_path: Path) -> Iterator[Team]:
    env.operator.ensure_running()
    team = Team(env, Kube(env.cluster, env.namespaces[purpose]), tmp_path)
    try:
        yield team
    finally:
        for sidecar in team.sidecars:
            sidecar.stop()


@pytest.fixture
def replicas(env: Env, tmp_path: Path) -> Iterator[Team]:
    yield from _team(env, "replicas", tmp_path)


@pytest.fixture
def team(env: Env, tmp_path: Path) -> Iterator[Team]:
    yield from _team(env, "team", tmp_path)


@pytest.fixture
def restarts(env: Env, tmp_path: Path) -> Iterator[Team]:
    yield from _team(env, "restarts", tmp_path)


@pytest.fixture
def alert(env: Env, tmp_path: Path) -> Iterator[Team]:
    yield from _team(env, "alert", tmp_path)


def test_two_replicas_of_one_agent_never_spend_past_its_budget(replicas: Team) -> None:
    # A call reserves its request's bytes plus max_tokens (~120 tokens) and is charged 4:
    # the token limit leaves room for 25 reservations, the request limit binds.
    limit_requests, limit_tokens = 25, 25 * 200
    replicas.policy(
        "own",
        [{"name": "daily", "window": "Day", "requests": limit_requests, "tokens": limit_tokens}],
    )
    replicas.agent("bot", "own", replicas=2)
    pods = [replicas.sidecar("bot"), replicas.sidecar("bot")]
    before = replicas.calls_made()
    statuses = burst(pods, 60) + burst(pods, 20)
    spent = replicas.calls_made() - before
    assert statuses.count(200) == spent <= limit_requests
    assert spent * TOKENS_PER_CALL <= limit_tokens
    assert spent >= 15, statuses  # the budget was really spent, not refused wholesale
    assert set(statuses) <= {200, 429}
    for pod in pods:  # a graceful stop reports the last usage and gives the rest back
        pod.stop()
    entry = wait_for(
        lambda: (
            (e := replicas.usage("ga", "bot").get("daily")) and e["used"]["requests"] == spent and e
        ),
        "the final usage in status",
    )
    assert entry["used"]["tokens"] == spent * TOKENS_PER_CALL
    assert entry["reserved"] == {"tokens": 0, "requests": 0, "cost": 0.0}
    assert entry["limit"] == {"requests": limit_requests, "tokens": limit_tokens}
    assert entry["byModel"][0]["model"] == "gpt-4o-mini"
    assert len(entry["leases"]) == 2 and all(lease["closed"] for lease in entry["leases"])
    assert entry["window"] == "Day" and entry["resetAt"].endswith("T00:00:00Z")
    table = replicas.kube.run("get", "ga", "bot")
    assert f"{entry['percent']}%" in table.splitlines()[1].split()


def test_two_agents_sharing_a_team_budget_never_spend_past_it(team: Team) -> None:
    team.policy("shared", [{"name": "team", "scope": "Policy", "window": "Month", "requests": 30}])
    team.agent("alpha", "shared")
    team.agent("beta", "shared")
    pods = [team.sidecar("alpha"), team.sidecar("beta")]
    before = team.calls_made()
    statuses = burst(pods, 80) + burst(pods, 20)
    spent = team.calls_made() - before
    assert statuses.count(200) == spent <= 30
    assert spent >= 18, statuses
    for pod in pods:
        pod.stop()
    entry = wait_for(
        lambda: (
            (e := team.usage("gp", "shared").get("team")) and e["used"]["requests"] == spent and e
        ),
        "the team's usage in status",
    )
    holders = sorted(lease["id"].split(".")[0] for lease in entry["leases"])
    assert holders == ["alpha", "beta"]
    assert not team.usage("ga", "alpha")  # a shared budget is kept on the policy only
    assert f"{entry['percent']}%" in team.kube.run("get", "gp", "shared").splitlines()[1].split()


def test_sidecar_kill_ingest_restart_and_rollout_reset_nothing(restarts: Team) -> None:
    limit = 30
    restarts.policy("own", [{"name": "daily", "window": "Day", "requests": limit}])
    restarts.agent("bot", "own")
    before = restarts.calls_made()
    spent: list[int] = []

    def step(sidecar: Sidecar, count: int) -> None:
        spent.append(burst([sidecar], count).count(200))
        assert sum(spent) == restarts.calls_made() - before <= limit

    first = restarts.sidecar("bot")
    step(first, 8)
    first.processes[-1].kill()  # no goodbye: its lease stays held back until the window ends
    second = restarts.sidecar("bot")
    step(second, 5)
    entry = wait_for(lambda: restarts.usage("ga", "bot").get("daily"), "usage in status")
    restarts.env.operator.stop()  # the ingest restarts, with nothing but the stored status
    restarts.env.operator.start()
    step(second, 5)
    after = restarts.usage("ga", "bot")["daily"]
    assert after["used"]["requests"] >= entry["used"]["requests"]
    # a rollout: the policy changes, new pods run the new config, the old ones stop
    config = restarts.kube.get("configmap", "bot-governance")
    restarts.kube.patch(
        "governancepolicy",
        "own",
        {"spec": {"blockedPatterns": [{"name": "no-secrets", "pattern": "top secret"}]}},
    )
    wait_for(lambda: restarts.kube.get("configmap", "bot-governance") != config, "a new config")
    third = restarts.sidecar("bot")
    second.stop()
    for _ in range(4):
        step(third, 10)
    assert sum(spent) <= limit, spent
    third.stop()
    final = wait_for(
        lambda: (
            (e := restarts.usage("ga", "bot").get("daily"))
            and sum(not lease["closed"] for lease in e["leases"]) == 1
            and e
        ),
        "every lease but the killed sidecar's closed",
    )
    used, held = final["used"]["requests"], final["reserved"]["requests"]
    # Nothing is lost or reset: what was not spent is held by the killed sidecar's lease
    # (its unreported calls among it) until the window ends; the rest was spent.
    assert used + held == limit
    assert used <= sum(spent) <= used + held
    assert sum(spent) >= used >= sum(spent) - spent[0]


def test_the_80_percent_alert_is_delivered_once(alert: Team) -> None:
    receiver = alert.env.receiver
    alert.kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "AlertSink",
            "metadata": {"name": "hook", "namespace": alert.kube.ns},
            "spec": {"type": "webhook", "url": f"http://127.0.0.1:{receiver.port}/hook"},
        }
    )
    alert.policy(
        "watched",
        [
            {
                "name": "calls",
                "scope": "Policy",
                "window": "Day",
                "requests": 10,
                "alertSinks": [{"name": "hook"}],
            }
        ],
    )
    alert.agent("bot", "watched", replicas=2)
    pods = [alert.sidecar("bot"), alert.sidecar("bot")]
    for _ in range(3):
        burst(pods, 12)
    for pod in pods:
        pod.stop()
    wait_for(lambda: receiver.budget_alerts(80), "the 80 % alert")
    wait_for(lambda: receiver.budget_alerts(100), "the 100 % alert")
    more = alert.sidecar("bot")  # later exchanges of the same window alert nothing more
    assert burst([more], 5).count(200) == 0
    more.stop()
    entry = alert.usage("gp", "watched")["calls"]
    assert entry["alerted"] == [80, 95, 100]
    (eighty,) = receiver.budget_alerts(80)
    assert eighty["budget"]["name"] == "calls" and eighty["alert"]["severity"] == "high"
    assert eighty["agent"]["namespace"] == alert.kube.ns
    assert "reached 80% of its day limit" in eighty["alert"]["description"]
