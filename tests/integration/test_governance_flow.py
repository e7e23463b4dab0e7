"""Governance end to end: real operator, real in-process ingest, real sidecar, fake provider.

One ``promethios operator`` subprocess (with its in-process ingest API) serves the module,
restricted to four namespaces created here, one per test. Each test creates a
GovernancePolicy and a GovernedAgent, waits for Ready, then runs the agent's governance
sidecar as a local process wired exactly as ``promethios demo`` wires it: the
operator-generated ConfigMap ``config.json`` and the api-key / provider Secrets as files,
with only file paths and listener ports rewritten. The sidecar proxies model calls to a
local fake provider (:func:`promethios_local.demo.upstream.build_upstream_app`, served from a
thread so blocking kubectl calls never stall it) and reports to the operator's ingest.

- an ingest outage plus a sidecar restart loses nothing and counts nothing twice;
- a key rotation is picked up by a live sidecar, the old key is honoured for the grace
  period only, a garbage key is refused;
- ``onBreach: Suspend`` scales the agent to zero on a critical violation and an
  acknowledgement restores it;
- ``onBreach: Quarantine`` denies traffic, scales to zero and revokes the key; an
  acknowledgement lifts all of it and the new key works;
- a sidecar that does not trust the ingest API's certificate delivers nothing and loses
  nothing; given the operator's CA bundle it delivers what it kept.

Every report crosses TLS: the operator issues the ingest API's certificate (``auto``
mode, its Secret in a namespace of this module), the sidecars verify it against the CA
bundle from their ConfigMap (``ingest.caFile``), and only against it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kube_helpers
import pytest
import yaml
from deploy_helpers import Upstream
from kube_helpers import free_port

from promethios.api.sidecarconfig import CONFIG_KEY
from promethios.api.wire import PATH_HEARTBEAT, PATH_VIOLATIONS
from promethios.builders.tls import ServingIdentity, decide, issue
from promethios.ingest.keystore import sha256_hex
from promethios_local.demo.run import local_sidecar_config, promethios_argv
from promethios_local.localcluster.process import ManagedProcess

pytestmark = pytest.mark.usefixtures("crds_installed")

API_VERSION = "governance.promethios.ai/v1alpha1"
AGENT = "bot"
POLICY = "policy"
PROVIDER_SECRET = "provider"
PROVIDER_KEY = "sk-provider-credential-held-by-the-sidecar-only"
MODEL = "gpt-4o-mini"
WAIT = 60.0
#: One namespace per test, all watched by the module's operator.
PURPOSES = ("outage", "rotation", "suspend", "quarantine", "untrusted")
#: Where the operator keeps the ingest API's TLS Secret.
TLS_SECRET = "promethios-operator-ingest-tls"
#: The shared poller with this module's patience (``timeout`` may still be passed).
wait_for = functools.partial(kube_helpers.wait_for, timeout=WAIT, interval=0.3)


# -- small utilities --------------------------------------------------------------------


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    ca_file: Path | None = None,
) -> tuple[int, Any]:
    """One request with a raw aiohttp client; (status, parsed body); status 0 = unreachable.

    https URLs are verified against ``ca_file`` only."""

    async def go() -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=20)
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        connector = aiohttp.TCPConnector(ssl=context) if context else None
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
            session.request(method, url, json=body, headers=headers) as response,
        ):
            raw = await response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode("utf-8", "replace")

    try:
        return asyncio.run(go())
    except (aiohttp.ClientConnectionError, TimeoutError):
        return 0, None


def metric_sample(url: str, sample: str) -> float:
    """The value of one Prometheus sample (``name{labels}`` as exposed) at ``url``; 0 if absent."""
    status, text = http("GET", url)
    assert status == 200, text
    for line in str(text).splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def write_secret_file(path: Path, value: str) -> None:
    """Replace a mounted-secret file atomically (a new inode, as the kubelet's swap)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(value)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def spool_keys(spool: Path) -> set[str]:
    """Idempotency keys of the violations waiting in a spool directory."""
    keys = set()
    for entry in spool.glob("*.json"):
        parts = entry.name[: -len(".json")].split("-", 2)
        assert len(parts) == 3, entry.name
        keys.add(parts[2])
    return keys


#: Every secret and every raw piece of PII the tests handled, and every log written:
#: the last test checks that none of the former appears in the latter, in status or events.
SENSITIVE: set[str] = set()
LOGS: list[Path] = []


def chat(content: str) -> dict[str, Any]:
    SENSITIVE.update(re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", content))
    return {"model": MODEL, "messages": [{"role": "user", "content": content}]}


# -- the processes ----------------------------------------------------------------------


class Operator:
    """``promethios operator`` with its in-process ingest on fixed ports; restartable.

    The ingest API speaks TLS with the certificate the operator issues into
    ``system_ns/promethios-operator-ingest-tls``; ``ca_file`` holds that Secret's CA bundle."""

    def __init__(
        self,
        cluster: Any,
        namespaces: list[str],
        system_ns: str,
        log_path: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.cluster, self.system_ns = cluster, system_ns
        self.ingest_port, self.metrics_port = free_port(), free_port()
        self.ingest_url = f"https://127.0.0.1:{self.ingest_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.ca_file = log_path.with_name("ingest-ca.crt")
        argv = promethios_argv(
            "operator",
            f"--kubeconfig={cluster.kubeconfig}",
            *(f"--namespace={ns}" for ns in namespaces),
            f"--ingest-port={self.ingest_port}",
            f"--ingest-metrics-port={self.metrics_port}",
            f"--ingest-url={self.ingest_url}",
            f"--tls-secret-namespace={system_ns}",
            "--liveness-port=0",
            "--resync-seconds=600",
            *extra_args,
        )
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = ManagedProcess("operator", argv, log_path, env)

    def check(self) -> None:
        code = self.process.exit_code()
        if code is not None:
            pytest.fail(f"the operator exited ({code}):\n{self.process.log_tail(60)}")

    def start(self) -> None:
        self.process.start()
        wait_for(
            lambda: http("GET", f"{self.metrics_url}/readyz")[0] == 200,
            "the operator's ingest API to be ready",
            check=self.check,
        )
        secret = Kube(self.cluster, self.system_ns).get("secret", TLS_SECRET) or {}
        self.ca_file.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))

    def stop(self) -> None:
        self.process.stop(timeout=15)
        wait_for(lambda: not port_open(self.ingest_port), "the ingest port to close", timeout=10)

    def ensure_running(self) -> None:
        if not self.process.running():
            self.start()


@dataclass
class Sidecar:
    """A ``promethios sidecar`` process wired from the operator's ConfigMap and Secrets."""

    workdir: Path
    config_path: Path
    api_key_file: Path
    spool: Path
    proxy_port: int
    metrics_port: int
    config: dict[str, Any]
    #: The ingest API's CA bundle the sidecar verifies against (from its ConfigMap).
    ca_file: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def check(self) -> None:
        code = self.processes[-1].exit_code() if self.processes else None
        if code is not None:
            pytest.fail(f"the sidecar exited ({code}):\n{self.processes[-1].log_tail(60)}")

    def start(self) -> None:
        """Start a new instance (same config, key file and spool directory)."""
        argv = promethios_argv("sidecar", f"--config={self.config_path}")
        log_path = self.workdir / f"sidecar-{len(self.processes)}.log"
        LOGS.append(log_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = ManagedProcess("sidecar", argv, log_path, env)
        process.start()
        self.processes.append(process)
        wait_for(
            lambda: http("GET", f"{self.url}/readyz")[0] == 200,
            "the sidecar to be ready",
            timeout=30,
            check=self.check,
        )

    def stop(self) -> None:
        for process in self.processes:
            process.stop(timeout=10)

    def counter(self, sample: str) -> float:
        """One sample of the running instance's metrics, e.g. ``name_total{label="x"}``."""
        return metric_sample(f"http://127.0.0.1:{self.metrics_port}/metrics", sample)

    def reloads(self) -> float:
        """``promethios_sidecar_config_reloads_total{result="ok"}`` of the running instance."""
        return self.counter('promethios_sidecar_config_reloads_total{result="ok"}')


class Kube:
    """kubectl in one namespace, returning parsed JSON."""

    def __init__(self, cluster: Any, ns: str) -> None:
        self.cluster, self.ns = cluster, ns

    def run(self, *args: str, input: str | None = None) -> str:
        return str(self.cluster.kubectl("-n", self.ns, *args, input=input).stdout)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.run("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.run("patch", kind, name, "--type=merge", "-p", json.dumps(patch))

    def secret(self, name: str, key: str) -> str:
        data = (self.get("secret", name) or {}).get("data") or {}
        value = base64.b64decode(data[key]).decode()
        if not key.endswith("Sha256"):
            SENSITIVE.add(value)
        return value

    def agent(self) -> dict[str, Any]:
        agent = self.get("governedagent", AGENT)
        assert agent is not None
        return agent

    def status(self) -> dict[str, Any]:
        return dict(self.agent().get("status") or {})

    def condition(self, type_: str = "Ready") -> dict[str, Any]:
        conditions = self.status().get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def violations(self) -> dict[str, int]:
        return dict((self.status().get("governance") or {}).get("violations") or {})

    def deployment_replicas(self) -> int | None:
        deployment = self.get("deployment", AGENT) or {}
        return (deployment.get("spec") or {}).get("replicas")

    def wait_ready(self) -> None:
        self.run("wait", "--for=condition=Ready", f"governedagent/{AGENT}", "--timeout=60s")


# -- fixtures ---------------------------------------------------------------------------


@dataclass
class Env:
    cluster: Any
    operator: Operator
    upstream: Upstream
    namespaces: dict[str, str]


@pytest.fixture(scope="module")
def env(cluster: Any, crds_installed: list[str], tmp_path_factory: Any) -> Iterator[Env]:
    """Namespaces, the fake provider and one operator watching exactly those namespaces."""
    suffix = uuid.uuid4().hex[:6]
    namespaces = {purpose: f"t-gov-{purpose}-{suffix}" for purpose in PURPOSES}
    system_ns = f"t-gov-system-{suffix}"
    upstream = Upstream()
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
        log_path = tmp_path_factory.mktemp("governance-operator") / "operator.log"
        LOGS.append(log_path)
        SENSITIVE.add(PROVIDER_KEY)
        operator = Operator(cluster, list(namespaces.values()), system_ns, log_path)
        operator.start()
        yield Env(cluster, operator, upstream, namespaces)
    finally:
        if operator is not None:
            operator.process.stop(timeout=15)
            if os.environ.get("PROMETHIOS_SHOW_OPERATOR_LOG"):
                print(operator.process.log_tail(400))
        upstream.stop()
        cluster.kubectl(
            "delete", "namespace", "--wait=false", system_ns, *namespaces.values(), check=False
        )


@dataclass
class Flow:
    """What one test works with: its namespace, the operator, and sidecars it started."""

    env: Env
    kube: Kube
    workdir: Path
    sidecars: list[Sidecar] = field(default_factory=list)

    @property
    def operator(self) -> Operator:
        return self.env.operator

    @property
    def agent_id(self) -> str:
        return f"{self.kube.ns}/{AGENT}"

    def create_agent(
        self, on_breach: str = "Alert", replicas: int = 1, grace_seconds: int = 600
    ) -> None:
        """A policy with a blocked pattern and PII redaction, and an enforcing agent."""
        ns = self.kube.ns
        policy = {
            "apiVersion": API_VERSION,
            "kind": "GovernancePolicy",
            "metadata": {"name": POLICY, "namespace": ns},
            "spec": {
                "blockedPatterns": [
                    {"name": "no-internal-hosts", "pattern": r"\binternal\.corp\b"}
                ],
                "piiDetection": {"action": "redact", "severity": "medium"},
            },
        }
        agent = {
            "apiVersion": API_VERSION,
            "kind": "GovernedAgent",
            "metadata": {"name": AGENT, "namespace": ns},
            "spec": {
                "image": "registry.example/agent:1",
                "replicas": replicas,
                "modelProvider": {
                    "type": "custom",
                    "baseUrl": self.env.upstream.url,
                    "credentialsSecretRef": {"name": PROVIDER_SECRET, "key": "apiKey"},
                },
                "governance": {
                    "policyRef": {"name": POLICY},
                    "mode": "enforce",
                    # Only the breaches a test provokes on purpose: no trust-threshold breach.
                    "trustThreshold": 0.0,
                    "heartbeatIntervalSeconds": 1,
                    "missedHeartbeatsBeforeStale": 10,
                    "onBreach": on_breach,
                },
                "apiKey": {"gracePeriodSeconds": grace_seconds},
            },
        }
        self.kube.apply(policy, agent)
        self.kube.wait_ready()

    def agent_config(self) -> dict[str, Any]:
        """The sidecar's config.json as the operator renders it into the agent's ConfigMap."""
        configmap = self.kube.get("configmap", f"{AGENT}-governance") or {}
        return dict(json.loads(configmap["data"][CONFIG_KEY]))

    def sidecar(self) -> Sidecar:
        """Wire a sidecar from the operator's ConfigMap and Secrets (as demo/run.py does)."""
        configmap = self.kube.get("configmap", f"{AGENT}-governance")
        assert configmap is not None
        config = json.loads(configmap["data"][CONFIG_KEY])
        # The operator's own values, untouched: where to report and where the provider is.
        assert config["ingest"]["url"] == self.operator.ingest_url
        assert config["ingest"]["caFile"] == "/etc/promethios/ca.crt"
        assert configmap["data"]["ca.crt"].encode() == self.operator.ca_file.read_bytes()
        assert config["provider"]["baseUrl"] == self.env.upstream.url
        assert config["agentId"] == self.agent_id
        workdir = self.workdir / f"sidecar-{len(self.sidecars)}"
        workdir.mkdir()
        files = {
            "api_key": workdir / "api-key",
            "credential": workdir / "provider-credential",
            "spool": workdir / "spool",
            "ca": workdir / "ingest-ca.crt",
        }
        files["spool"].mkdir()
        files["ca"].write_text(configmap["data"]["ca.crt"])
        write_secret_file(files["api_key"], self.kube.secret(f"{AGENT}-api-key", "apiKey"))
        write_secret_file(files["credential"], self.kube.secret(PROVIDER_SECRET, "apiKey"))
        proxy_port, metrics_port = free_port(), free_port()
        local = local_sidecar_config(config, files, proxy_port, metrics_port)
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(local, indent=2))
        assert local["ingest"]["caFile"] == str(files["ca"])
        sidecar = Sidecar(
            workdir,
            config_path,
            files["api_key"],
            files["spool"],
            proxy_port,
            metrics_port,
            local,
            files["ca"],
        )
        self.sidecars.append(sidecar)
        return sidecar

    def identity(self) -> str:
        return str(self.kube.status()["governanceIdentity"])

    def heartbeat(self, key: str) -> int:
        """A raw heartbeat to the ingest API with ``key``; the HTTP status (0: unreachable)."""
        body = {
            "agentId": self.agent_id,
            "status": "active",
            "uptime": 1,
            "lastActivity": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        headers = {
            "Authorization": f"Bearer {key}",
            "X-Agent-ID": self.agent_id,
            "X-Governance-ID": self.identity(),
        }
        url = self.operator.ingest_url + PATH_HEARTBEAT
        return http("POST", url, body, headers, self.operator.ca_file)[0]

    def violation(self, key: str, idempotency_key: str) -> int:
        """A raw low-severity violation report with ``key``; the HTTP status."""
        body = {
            "agentId": self.agent_id,
            "violation": {"type": "test.revoked", "severity": "low", "description": "test"},
            "idempotencyKey": idempotency_key,
        }
        headers = {
            "Authorization": f"Bearer {key}",
            "X-Agent-ID": self.agent_id,
            "X-Governance-ID": self.identity(),
        }
        return http(
            "POST", self.operator.ingest_url + PATH_VIOLATIONS, body, headers, self.operator.ca_file
        )[0]

    def wait_total(self, total: int, timeout: float = 30) -> None:
        wait_for(
            lambda: self.kube.violations().get("total") == total,
            f"status.governance.violations.total == {total} "
            f"(now {self.kube.violations().get('total')})",
            timeout=timeout,
            check=self.operator.check,
        )


def _flow(env: Env, purpose: str, tmp_path: Path) -> Iterator[Flow]:
    env.operator.ensure_running()  # an earlier test may have failed while it was stopped
    flow = Flow(env, Kube(env.cluster, env.namespaces[purpose]), tmp_path)
    try:
        yield flow
    finally:
        for sidecar in flow.sidecars:
            sidecar.stop()


@pytest.fixture
def outage(env: Env, tmp_path: Path) -> Iterator[Flow]:
    yield from _flow(env, "outage", tmp_path)


@pytest.fixture
def rotation(env: Env, tmp_path: Path) -> Iterator[Flow]:
    yield from _flow(env, "rotation", tmp_path)


@pytest.fixture
def suspend(env: Env, tmp_path: Path) -> Iterator[Flow]:
    yield from _flow(env, "suspend", tmp_path)


@pytest.fixture
def quarantine(env: Env, tmp_path: Path) -> Iterator[Flow]:
    yield from _flow(env, "quarantine", tmp_path)


@pytest.fixture
def untrusted(env: Env, tmp_path: Path) -> Iterator[Flow]:
    yield from _flow(env, "untrusted", tmp_path)


def critical_violation(sidecar: Sidecar) -> None:
    """The agent reports a critical violation to its sidecar (no key: the sidecar adds it)."""
    body = {
        "agentId": "ignored/the-sidecar-stamps-its-own",
        "violation": {
            "type": "tool.exfiltration",
            "severity": "critical",
            "description": "agent tried to upload the customer table",
            "context": {"tool": "http_post"},
        },
    }
    status, answer = http("POST", sidecar.url + PATH_VIOLATIONS, body)
    assert (status, answer["accepted"]) == (202, 1), answer


# -- 1. nothing lost, nothing counted twice ---------------------------------------------


def test_ingest_outage_and_sidecar_restart_lose_nothing(outage: Flow) -> None:
    flow, kube = outage, outage.kube
    flow.create_agent()
    sidecar = flow.sidecar()
    sidecar.start()
    wait_for(
        lambda: (kube.status().get("heartbeat") or {}).get("state") == "active",
        "the sidecar's first heartbeat to reach the status",
    )

    flow.operator.stop()  # the in-process ingest API goes down with it
    assert http("GET", flow.operator.metrics_url + "/healthz")[0] == 0

    emails = [f"user{i}.{uuid.uuid4().hex[:6]}@example.com" for i in range(5)]
    for email in emails:
        status, answer = http("POST", sidecar.url + "/v1/chat/completions", chat(f"mail {email}"))
        assert status == 200, answer
        reply = answer["choices"][0]["message"]["content"]
        # The provider echoes what it got: it only ever saw the redacted prompt.
        assert "[REDACTED:email]" in reply and email not in reply, reply
    status, answer = http(
        "POST", sidecar.url + "/v1/chat/completions", chat("deploy to internal.corp now")
    )
    assert status == 403 and answer["error"]["rule"] == "blockedPatterns.no-internal-hosts", answer
    expected = len(emails) + 1
    assert http("GET", flow.operator.metrics_url + "/healthz")[0] == 0, "the ingest came back"

    keys = spool_keys(sidecar.spool)
    assert len(keys) == expected, sorted(keys)
    unreachable = 'promethios_sidecar_deliveries_total{kind="violations",result="unreachable"}'
    attempts = sidecar.counter(unreachable)
    wait_for(
        lambda: sidecar.counter(unreachable) >= attempts + 2,
        "two more delivery attempts against the dead ingest",
    )
    assert spool_keys(sidecar.spool) == keys

    sidecar.stop()
    assert spool_keys(sidecar.spool) == keys, "stopping the sidecar lost spooled violations"
    assert kube.violations().get("total", 0) == 0
    # What a crash between "the ingest recorded it" and "the spool file is deleted" leaves.
    crashed = {p.name: p.read_bytes() for p in sidecar.spool.glob("*.json")}

    flow.operator.start()
    sidecar.start()  # a new instance on the same spool directory
    flow.wait_total(expected)
    wait_for(lambda: not spool_keys(sidecar.spool), "the spool to drain")

    # Replay: the same violations again, after another ingest restart (its memory is gone;
    # only the status it wrote remains). They must be acknowledged and not counted again.
    sidecar.stop()
    flow.operator.stop()
    for name, content in crashed.items():
        (sidecar.spool / name).write_bytes(content)
    flow.operator.start()
    sidecar.start()
    wait_for(lambda: not spool_keys(sidecar.spool), "the replayed spool to drain")
    # A violation leaves the spool only once the ingest acknowledged it, after the status
    # write that holds it: nothing can add to the counts now. A further heartbeat shows the
    # agent reporting on, without changing them.
    beats = 'promethios_sidecar_deliveries_total{kind="heartbeat",result="ok"}'
    seen = sidecar.counter(beats)
    wait_for(lambda: sidecar.counter(beats) > seen, "another heartbeat delivered")
    counts = kube.violations()
    assert counts["total"] == expected, counts
    assert (counts["medium"], counts["high"]) == (len(emails), 1), counts
    recent = kube.status()["governance"]["recentViolations"]
    ids = [item["id"] for item in recent]
    assert len(ids) == len(set(ids)) == expected, ids
    assert set(ids) == keys  # recorded under the sidecar's own idempotency keys
    assert spool_keys(sidecar.spool) == set()
    assert not list((sidecar.spool / "rejected").iterdir())
    # The provider saw only the sidecar's credential, never anything else.
    assert set(flow.env.upstream.log.credentials) == {f"Bearer {PROVIDER_KEY}"}


# -- 2. key rotation ----------------------------------------------------------------------


def test_key_rotation_is_picked_up_by_a_live_sidecar(rotation: Flow) -> None:
    flow, kube = rotation, rotation.kube
    grace = 10
    flow.create_agent(grace_seconds=grace)
    sidecar = flow.sidecar()
    sidecar.start()
    wait_for(
        lambda: (kube.status().get("heartbeat") or {}).get("state") == "active",
        "the sidecar's first heartbeat",
    )
    old_key = kube.secret(f"{AGENT}-api-key", "apiKey")
    assert sidecar.api_key_file.read_text() == old_key

    kube.patch("governedagent", AGENT, {"spec": {"apiKey": {"rotation": 1}}})

    def rotated() -> dict[str, Any] | None:
        secret = kube.get("secret", f"{AGENT}-api-key") or {}
        return secret if "previousApiKeySha256" in secret.get("data", {}) else None

    secret = wait_for(rotated, "the operator to rotate the key")
    new_key = base64.b64decode(secret["data"]["apiKey"]).decode()
    assert new_key != old_key
    assert base64.b64decode(secret["data"]["previousApiKeySha256"]).decode() == sha256_hex(old_key)
    expires_text = secret["metadata"]["annotations"]["promethios.ai/previous-key-expires-at"]
    expires = datetime.fromisoformat(expires_text.replace("Z", "+00:00")).timestamp()

    # The ingest API learns the new key from the Secret; the old one stays valid for now.
    wait_for(lambda: flow.heartbeat(new_key) == 202, "the ingest API to accept the new key")
    if time.time() >= expires - 1:
        pytest.fail("the grace period ran out before the old key could be checked (too slow)")
    assert flow.heartbeat(old_key) == 202
    assert flow.heartbeat("garbage-" + uuid.uuid4().hex) == 401

    # The kubelet updates the mounted Secret; the live sidecar reloads it on its poll.
    reloads = sidecar.reloads()
    write_secret_file(sidecar.api_key_file, new_key)
    wait_for(lambda: sidecar.reloads() > reloads, "the sidecar to reload the key file", timeout=15)

    # Once the grace period is over the old key is refused ...
    wait_for(lambda: flow.heartbeat(old_key) == 401, "the old key to expire", timeout=grace + 15)
    assert time.time() >= expires - 1
    # ... and what the sidecar delivers now (with the new key) is still recorded.
    email = f"rotated.{uuid.uuid4().hex[:6]}@example.com"
    status, answer = http("POST", sidecar.url + "/v1/chat/completions", chat(email))
    assert status == 200 and email not in json.dumps(answer), answer
    flow.wait_total(1)
    assert spool_keys(sidecar.spool) == set()
    assert not list((sidecar.spool / "rejected").iterdir())
    assert kube.status()["apiKey"]["rotation"] == 1


# -- 3. suspend on breach ---------------------------------------------------------------


def test_critical_violation_suspends_until_acknowledged(suspend: Flow) -> None:
    flow, kube = suspend, suspend.kube
    flow.create_agent(on_breach="Suspend", replicas=2)
    assert kube.status()["readyReplicas"] == 2
    sidecar = flow.sidecar()
    sidecar.start()

    critical_violation(sidecar)
    wait_for(lambda: kube.deployment_replicas() == 0, "the Deployment to scale to zero")
    enforcement = kube.status()["enforcement"]
    assert enforcement["action"] == "Suspended" and enforcement["breach"] == 1, enforcement
    assert "critical" in enforcement["reason"], enforcement
    ready = wait_for(
        lambda: (c := kube.condition()).get("reason") == "EnforcementSuspended" and c,
        "Ready=False/EnforcementSuspended",
    )
    assert ready["status"] == "False", ready
    assert "acknowledgedBreach to 1" in ready["message"], ready
    assert kube.violations()["critical"] == 1
    compliant = kube.condition("PolicyCompliant")
    assert (compliant.get("status"), compliant.get("reason")) == ("False", "CriticalViolation")
    wait_for(lambda: kube.status().get("readyReplicas") == 0, "the pods to be gone")
    assert spool_keys(sidecar.spool) == set()

    kube.patch("governedagent", AGENT, {"spec": {"governance": {"acknowledgedBreach": 1}}})
    wait_for(lambda: kube.deployment_replicas() == 2, "the replicas to be restored")
    kube.wait_ready()
    wait_for(lambda: kube.status().get("readyReplicas") == 2, "two ready replicas again")
    status = kube.status()
    assert status["enforcement"]["action"] == "None" and status["enforcement"]["breach"] == 1
    assert kube.condition()["reason"] == "AgentAvailable"
    # Nothing re-suspends the released agent: a later report (a medium PII violation) is
    # recorded, with the enforcement left released.
    email = f"after.release.{uuid.uuid4().hex[:6]}@example.com"
    assert http("POST", sidecar.url + "/v1/chat/completions", chat(email))[0] == 200
    flow.wait_total(2)
    assert kube.deployment_replicas() == 2
    assert kube.status()["enforcement"]["action"] == "None"


# -- 4. quarantine ----------------------------------------------------------------------


def test_critical_violation_quarantines_until_acknowledged(quarantine: Flow) -> None:
    flow, kube = quarantine, quarantine.kube
    flow.create_agent(on_breach="Quarantine")
    sidecar = flow.sidecar()
    sidecar.start()
    old_key = kube.secret(f"{AGENT}-api-key", "apiKey")
    assert flow.heartbeat(old_key) == 202

    critical_violation(sidecar)
    policy = wait_for(
        lambda: kube.get("networkpolicy", f"{AGENT}-quarantine"), "the deny-all NetworkPolicy"
    )
    deployment = kube.get("deployment", AGENT) or {}
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress") and not policy["spec"].get("egress")
    # The pods stay, cut off: the sidecar is told (live, through its config) to refuse calls.
    wait_for(lambda: flow.agent_config().get("quarantined") is True, "the quarantined config")
    assert kube.deployment_replicas() == 1
    wait_for(lambda: kube.condition().get("reason") == "Quarantined", "Ready=False/Quarantined")
    assert kube.status()["enforcement"]["action"] == "Quarantined"

    # The key is revoked: a new one; the old one only delivers violations, for the grace.
    secret = kube.get("secret", f"{AGENT}-api-key") or {}
    assert secret["metadata"]["annotations"]["promethios.ai/previous-key-scope"] == "violations"
    new_key = base64.b64decode(secret["data"]["apiKey"]).decode()
    assert new_key != old_key
    wait_for(lambda: flow.heartbeat(old_key) == 401, "the ingest API to refuse the revoked key")
    assert flow.violation(old_key, "after-revocation") == 200  # still delivers what it holds
    flow.wait_total(2)

    kube.patch("governedagent", AGENT, {"spec": {"governance": {"acknowledgedBreach": 1}}})
    wait_for(
        lambda: kube.get("networkpolicy", f"{AGENT}-quarantine") is None,
        "the NetworkPolicy to be deleted",
    )
    wait_for(lambda: flow.agent_config().get("quarantined") is False, "the released config")
    kube.wait_ready()
    assert kube.deployment_replicas() == 1
    status = kube.status()
    assert status["enforcement"]["action"] == "None", status["enforcement"]
    assert "networkPolicy" not in status["children"]
    assert kube.secret(f"{AGENT}-api-key", "apiKey") == new_key  # release does not re-key

    # The new key works, the revoked one stays revoked, and the live sidecar recovers.
    assert flow.heartbeat(new_key) == 202
    assert flow.heartbeat(old_key) == 401
    write_secret_file(sidecar.api_key_file, new_key)
    email = f"after.release.{uuid.uuid4().hex[:6]}@example.com"
    status_code, answer = http("POST", sidecar.url + "/v1/chat/completions", chat(email))
    assert status_code == 200, answer
    flow.wait_total(3)
    assert spool_keys(sidecar.spool) == set()


# -- 5. the sidecar verifies the ingest API's certificate ---------------------------------


def test_a_sidecar_that_does_not_trust_the_ingest_delivers_nothing_and_loses_nothing(
    untrusted: Flow,
) -> None:
    flow, kube = untrusted, untrusted.kube
    flow.create_agent()
    sidecar = flow.sidecar()
    # The sidecar trusts another CA than the operator's: a man in the middle, as it sees it.
    identity = ServingIdentity.for_service("promethios-operator", "x", ("127.0.0.1",))
    now = datetime.now(UTC)
    foreign = issue(decide(None, identity, now), None, identity, now)
    sidecar.ca_file.write_bytes(foreign.ca_bundle_pem)
    sidecar.start()
    email = f"untrusted.{uuid.uuid4().hex[:6]}@example.com"
    assert http("POST", sidecar.url + "/v1/chat/completions", chat(f"mail {email}"))[0] == 200
    unreachable = 'promethios_sidecar_deliveries_total{kind="violations",result="unreachable"}'
    wait_for(lambda: sidecar.counter(unreachable) >= 2, "two refused delivery attempts")
    # The ingest API is up and serving its certificate to whoever trusts the right CA.
    assert flow.heartbeat(kube.secret(f"{AGENT}-api-key", "apiKey")) == 202
    assert sidecar.counter('promethios_sidecar_deliveries_total{kind="heartbeat",result="ok"}') == 0
    assert kube.violations().get("total", 0) == 0
    assert len(spool_keys(sidecar.spool)) == 1

    # Given the operator's bundle, a new instance delivers what the spool kept.
    sidecar.stop()
    sidecar.ca_file.write_bytes(flow.operator.ca_file.read_bytes())
    sidecar.start()
    flow.wait_total(1)
    wait_for(lambda: not spool_keys(sidecar.spool), "the spool to drain")


# -- 6. nothing secret leaks -------------------------------------------------------------


def test_no_secret_or_raw_pii_in_logs_status_or_events(env: Env) -> None:
    """Runs last: every key, credential and raw email the flows above used stays hidden."""
    emails = {value for value in SENSITIVE if "@" in value}
    assert PROVIDER_KEY in SENSITIVE and len(SENSITIVE - emails) >= 4 and len(emails) >= 5
    places: dict[str, str] = {str(path): path.read_text(errors="replace") for path in LOGS}
    for ns in env.namespaces.values():
        kube = Kube(env.cluster, ns)
        places[f"{ns} events"] = kube.run("get", "events", "-o", "json")
        places[f"{ns} governedagents"] = kube.run("get", "governedagents", "-o", "json")
    assert len(places) >= len(env.namespaces) * 2 + 2
    leaks = [
        f"{value[:6]}... in {where}"
        for where, text in places.items()
        for value in SENSITIVE
        if value in text
    ]
    assert leaks == []
