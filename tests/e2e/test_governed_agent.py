"""A GovernedAgent in a real pod: the test agent calls the fake provider (a pod too)
through its native sidecar; violations, heartbeats and the credential boundary are
checked in the running pod, and the sidecar's memory is read from its cgroup."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import (
    E2E_IMAGE,
    OPERATOR_NAMESPACE,
    RELEASE,
    AgentEnv,
    Kube,
    parse_time,
    record,
    sha256,
    wait_for,
)
from e2e_platform import Platform

SIDECAR = "governance-sidecar"
PII_PROMPT = "Email the refund to jane.doe@example.com today."


@pytest.fixture(scope="module")
def agent(kube: Kube, operator_release: str) -> Iterator[AgentEnv]:
    env = AgentEnv.create(kube, "agent", "chatty")
    record("apply -> first heartbeat from a real pod", f"{env.first_heartbeat_seconds:.1f} s")
    yield env
    env.delete()


def test_the_agent_runs_beside_a_native_sidecar_on_the_real_node(
    agent: AgentEnv, platform: Platform
) -> None:
    pod = agent.pod()
    assert pod["spec"]["nodeName"] == platform.node_name
    (sidecar,) = pod["spec"]["initContainers"]
    assert sidecar["name"] == SIDECAR and sidecar["restartPolicy"] == "Always"
    (sidecar_status,) = pod["status"]["initContainerStatuses"]
    assert sidecar_status["started"] and sidecar_status["ready"], sidecar_status
    (agent_status,) = pod["status"]["containerStatuses"]
    assert platform.names_image(agent_status["image"], E2E_IMAGE), agent_status["image"]
    assert agent_status["ready"]
    # Native sidecar order: the agent started only after the sidecar's startup probe passed.
    sidecar_started = parse_time(sidecar_status["state"]["running"]["startedAt"])
    agent_started = parse_time(agent_status["state"]["running"]["startedAt"])
    assert agent_started >= sidecar_started
    assert sidecar_status["restartCount"] == agent_status["restartCount"] == 0


def test_a_pii_call_becomes_a_violation_in_the_status(agent: AgentEnv) -> None:
    before = agent.violations_total()
    answer = agent.ask(PII_PROMPT)
    # Redact mode: the call goes through with the address masked before it left the pod.
    assert answer["status"] == 200, answer
    assert "jane.doe@example.com" not in answer["reply"] and "refund" in answer["reply"]
    wait_for(lambda: agent.violations_total() > before, "the violation in status", timeout=60)
    recent = agent.governance()["recentViolations"]
    assert any(v["type"].startswith("pii") for v in recent), recent
    assert "jane.doe@example.com" not in json.dumps(agent.status())


def heartbeat_age(kube: Kube, agent: AgentEnv) -> float | None:
    """The ingest API's ``promethios_agent_heartbeat_age_seconds`` for the agent, read
    through the API server's Service proxy (the status itself only carries lastHeartbeat
    every 120 s; the HeartbeatFresh condition and this gauge are live)."""
    metrics = kube.run(
        "get", "--raw",
        f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/services/{RELEASE}:metrics/proxy/metrics",
    ).stdout  # fmt: skip
    labels = f'name="{agent.name}",namespace="{agent.namespace}"'
    for line in metrics.splitlines():
        if line.startswith("promethios_agent_heartbeat_age_seconds{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_heartbeats_stay_fresh(agent: AgentEnv, kube: Kube) -> None:
    interval = 3  # spec.governance.heartbeatIntervalSeconds of the test agent
    stale_after = 3 * interval  # missedHeartbeatsBeforeStale (default 3) x interval
    ages = []
    deadline = time.monotonic() + 3 * stale_after  # three stale windows
    while time.monotonic() < deadline:
        age = heartbeat_age(kube, agent)
        assert age is not None, "the ingest API has no heartbeat gauge for the agent"
        ages.append(age)
        conditions = {c["type"]: c for c in agent.status().get("conditions", [])}
        assert conditions["HeartbeatFresh"]["status"] == "True", conditions["HeartbeatFresh"]
        time.sleep(interval)
    assert agent.heartbeat()["state"] == "active"
    assert len(ages) >= 5 and max(ages) < 2 * interval + 2, ages


def test_the_agent_container_cannot_read_the_credential_or_the_ingest_key(
    agent: AgentEnv, kube: Kube
) -> None:
    pod = agent.pod()["metadata"]["name"]
    secret = kube.get("secret", f"{agent.name}-api-key", agent.namespace)
    assert secret is not None
    ingest_key = base64.b64decode(secret["data"]["apiKey"]).decode()
    digests = [sha256(agent.credential), sha256(ingest_key)]
    looked = kube.exec_json(agent.namespace, pod, "agent",
                            "python", "/opt/e2e/agent.py", "look-for", *digests)  # fmt: skip
    assert looked["found"] == [], looked
    assert looked["files_checked"] > 1000  # it really searched the container's files
    listing = kube.exec(agent.namespace, pod, "agent", "ls", "/var/run/promethios")
    assert listing.returncode != 0  # no secret mount in the agent container at all
    # Positive control: the sidecar, in the same pod, does hold both.
    held = kube.exec_json(
        agent.namespace, pod, SIDECAR, "python", "-c",
        "import hashlib, json; print(json.dumps([hashlib.sha256(open(p).read().strip()"
        ".encode()).hexdigest() for p in ('/var/run/promethios/provider/credential',"
        " '/var/run/promethios/api-key/apiKey')]))",
    )  # fmt: skip
    assert held == digests
    # And the provider received the credential on the agent's calls (from the sidecar).
    agent.ask("Say hello.")
    seen = kube.exec_json(
        agent.namespace, "fake-provider", "provider", "python", "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/seen')"
        ".read().decode())",
    )  # fmt: skip
    assert sha256(agent.credential) in seen["credential_sha256"], seen["paths"]


def sidecar_cgroup_memory(cgroup: Path) -> dict[str, int]:
    """The sidecar container's memory from its cgroup (v1 memory controller)."""
    stat = dict(
        (line.split()[0], int(line.split()[1]))
        for line in (cgroup / "memory.stat").read_text().splitlines()
    )
    usage = int((cgroup / "memory.usage_in_bytes").read_text())
    return {
        "usage": usage,
        "working_set": usage - stat.get("total_inactive_file", 0),
        "rss": stat.get("total_rss", 0),
    }


def test_the_sidecar_memory_in_the_pod_is_recorded(
    agent: AgentEnv, kube: Kube, platform: Platform
) -> None:
    for _ in range(5):  # some traffic first, so the figure is not an idle one
        assert agent.ask("Summarise the report in one sentence.")["status"] == 200
    pod = agent.pod()
    (status,) = pod["status"]["initContainerStatuses"]
    container_id = status["containerID"].removeprefix("containerd://")
    memory = sidecar_cgroup_memory(platform.container_memory_cgroup(container_id))
    mib = {k: round(v / 2**20, 1) for k, v in memory.items()}
    record("sidecar memory in the pod (cgroup, MiB)", json.dumps(mib))
    limit = 256 * 2**20  # the sidecar's default memory limit
    assert 8 * 2**20 < memory["working_set"] < limit, mib
    # The kubelet reports the same container through the API server (summary API).
    summary = json.loads(
        kube.run("get", "--raw", f"/api/v1/nodes/{platform.node_name}/proxy/stats/summary").stdout
    )
    pods = [p for p in summary["pods"] if p["podRef"]["name"] == pod["metadata"]["name"]]
    assert pods, "the kubelet's summary API does not list the agent pod"
    sidecars = [c for c in pods[0]["containers"] if c["name"] == SIDECAR]
    assert sidecars and sidecars[0]["memory"]["workingSetBytes"] > 0, pods[0]["containers"]
    record("sidecar working set (kubelet summary, MiB)",
           f"{sidecars[0]['memory']['workingSetBytes'] / 2**20:.1f}")  # fmt: skip
