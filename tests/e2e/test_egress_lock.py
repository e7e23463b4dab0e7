"""Egress lock in real pods (kube-router enforces the NetworkPolicies): a Locked agent's
container cannot reach the provider directly, its calls through its gateway work and are
governed (heartbeats and violations reach the status), the service its policy allows is
reachable, and another agent's pod cannot use the gateway; an Open agent is unchanged."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    AgentEnv,
    Kube,
    Lazy,
    PodStates,
    credential_secret,
    fake_provider,
    governed_agent,
    pod_ready,
    policy,
    record,
    sha256,
    wait_for,
)

PII_PROMPT = "Through the gateway: write to sam.roe@example.com."


@dataclass
class Agents:
    locked: AgentEnv
    open: AgentEnv

    @property
    def namespace(self) -> str:
        return self.locked.namespace


def allowed_service(namespace: str) -> list[dict[str, Any]]:
    """A second fake provider, ``allowed-service:8080``: what the policy lets out."""
    objects = fake_provider(namespace)
    for item in objects:
        item["metadata"]["name"] = "allowed-service"
        if item["kind"] == "Pod":
            item["metadata"]["labels"] = {"app": "allowed-service"}
        else:
            item["spec"]["selector"] = {"app": "allowed-service"}
    return objects


def egress_policy(namespace: str) -> dict[str, Any]:
    body = policy(namespace)
    body["spec"]["egress"] = {
        "allow": [
            {"podSelector": {"matchLabels": {"app": "allowed-service"}}, "ports": [{"port": 8080}]}
        ]
    }
    return body


def start_agent(
    kube: Kube, namespace: str, name: str, egress: str, credential: str, on_breach: str = "Alert"
) -> AgentEnv:
    env = AgentEnv(kube, namespace, name, credential)
    began = time.monotonic()
    body = governed_agent(namespace, name, on_breach)
    body["spec"]["governance"]["egress"] = egress
    kube.apply(body)
    what = Lazy(lambda: f"the first heartbeat of {namespace}/{name} ({egress}); pods: "
                f"{PodStates(kube.items('pods', namespace))}")  # fmt: skip
    wait_for(lambda: env.heartbeat().get("lastHeartbeat"), what, timeout=180)
    env.first_heartbeat_seconds = time.monotonic() - began
    return env


@pytest.fixture(scope="module")
def agents(kube: Kube, operator_release: str) -> Iterator[Agents]:
    namespace = kube.namespace(f"e2e-egress-{uuid.uuid4().hex[:6]}")
    credential = f"sk-e2e-{uuid.uuid4().hex}"
    kube.apply(credential_secret(namespace, credential), *fake_provider(namespace),
               *allowed_service(namespace), egress_policy(namespace))  # fmt: skip
    for pod in ("fake-provider", "allowed-service"):
        wait_for(lambda pod=pod: pod_ready(kube.get("pod", pod, namespace) or {}),
                 f"the {pod} pod to be Ready", timeout=120)  # fmt: skip
    locked = start_agent(kube, namespace, "locked", "Locked", credential, "Quarantine")
    record("Locked agent: apply -> first heartbeat (via its gateway)",
           f"{locked.first_heartbeat_seconds:.1f} s")  # fmt: skip
    opened = start_agent(kube, namespace, "open", "Open", credential)
    yield Agents(locked, opened)
    kube.run("delete", "namespace", namespace, "--wait=false", check=False)


def assert_cut_by_policy(answer: dict[str, Any]) -> None:
    """kube-router rejects (ICMP: connection refused) or drops (timeout); a name that does
    not resolve would be a DNS failure instead, which proves nothing about the policy."""
    error = str(answer["error"])
    assert "refused" in error or "timed out" in error, answer


def gateway_address(agents: Agents) -> tuple[str, int]:
    return f"locked-gateway.{agents.namespace}.svc", 15001


def test_status_reports_placement_and_egress(agents: Agents) -> None:
    locked = agents.locked.status()["egress"]
    assert locked["mode"] == "Locked" and locked["placement"] == "Gateway"
    assert locked["gateway"] == "locked-gateway"
    assert agents.open.status()["egress"] == {"mode": "Open", "placement": "Sidecar"}


def test_locked_agent_has_no_sidecar_and_no_credential(agents: Agents, kube: Kube) -> None:
    pod = agents.locked.pod(ready=False)
    names = [c["name"] for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])]
    assert names == ["agent"]
    found = kube.exec_json(agents.namespace, pod["metadata"]["name"], "agent",
                           "python", "/opt/e2e/agent.py", "look-for",
                           sha256(agents.locked.credential))  # fmt: skip
    assert found["found"] == [], found


def test_locked_agent_cannot_reach_the_provider_directly(agents: Agents) -> None:
    locked = agents.locked
    blocked = wait_for(
        lambda: (
            (answer := locked.connect(locked.provider_address()))
            and not answer["connected"]
            and answer
        ),
        "the Locked agent's direct connection to the provider to fail",
        timeout=60,
        interval=2,
    )
    assert_cut_by_policy(blocked)


def test_locked_agent_calls_through_its_gateway_governed(agents: Agents) -> None:
    locked = agents.locked
    began = time.monotonic()
    answer = locked.ask("Say hello.")
    record("Locked agent: one call through the gateway (exec incl.)",
           f"{time.monotonic() - began:.2f} s")  # fmt: skip
    assert answer["status"] == 200, answer
    before = locked.violations_total()
    redacted = locked.ask(PII_PROMPT)
    assert redacted["status"] == 200, redacted
    assert "sam.roe@example.com" not in str(redacted["reply"])  # the provider echoes the prompt
    wait_for(lambda: locked.violations_total() > before,
             "the gateway's violation to reach the status", timeout=90, interval=2)  # fmt: skip
    recent = locked.governance()["recentViolations"]
    assert any(v["type"].startswith("pii") for v in recent), recent


def test_locked_agent_reaches_the_allowed_service(agents: Agents) -> None:
    address = (f"allowed-service.{agents.namespace}.svc", 8080)
    answer = agents.locked.connect(address)
    assert answer["connected"] is True, answer


def test_another_agent_cannot_use_the_gateway(agents: Agents) -> None:
    # The locked agent reaches its gateway (the positive control) ...
    assert agents.locked.connect(gateway_address(agents))["connected"] is True
    # ... another agent's pod, whose own egress is open, is refused by the gateway's ingress.
    refused = wait_for(
        lambda: (
            (answer := agents.open.connect(gateway_address(agents)))
            and not answer["connected"]
            and answer
        ),
        "another agent's connection to the gateway to fail",
        timeout=60,
        interval=2,
    )
    assert_cut_by_policy(refused)


def test_open_agent_is_unchanged(agents: Agents) -> None:
    opened = agents.open
    assert opened.connect(opened.provider_address())["connected"] is True
    pod = opened.pod()
    sidecars = [c["name"] for c in pod["spec"].get("initContainers", [])]
    assert sidecars == ["governance-sidecar"]
    assert opened.ask("Say hello.")["status"] == 200


BENCH_CALLS = 300
BENCH_RUNS = 5
#: Where the benchmark below writes its results when asked (``benchmarks/bench_gateway.py``
#: sets it, so that a test run leaves the source tree as it was).
BENCH_OUT = "PROMETHIOS_GATEWAY_BENCH_OUT"


def bench(agent: AgentEnv, base_url: str) -> dict[str, Any]:
    pod = agent.pod(ready=False)["metadata"]["name"]
    result = agent.kube.exec_json(agent.namespace, pod, "agent", "python", "/opt/e2e/agent.py",
                                  "bench", base_url, str(BENCH_CALLS))  # fmt: skip
    assert "error" not in result, result
    return dict(result)


def test_bench_gateway_latency_beside_the_sidecar(agents: Agents) -> None:
    """One model call's latency from inside a pod on the real node, three ways: straight to
    the provider (the floor: one pod-to-pod hop, no governance), through the sidecar (Open:
    localhost, then the hop) and through the gateway (Locked: a hop to the gateway's pod,
    then the hop to the provider), alternating rounds so all see the same load."""
    provider = f"http://fake-provider.{agents.namespace}.svc:8080/v1"
    gateway = f"http://{gateway_address(agents)[0]}:15001/v1"
    paths = {
        "floor": (agents.open, provider),
        "sidecar": (agents.open, "http://127.0.0.1:15001/v1"),
        "gateway": (agents.locked, gateway),
    }
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    for _ in range(BENCH_RUNS):
        for name, (agent, url) in paths.items():
            samples[name].append(bench(agent, url))
    p50 = {name: min(s["p50_ms"] for s in runs) for name, runs in samples.items()}
    p99 = {name: min(s["p99_ms"] for s in runs) for name, runs in samples.items()}
    results = {
        "calls_per_run": BENCH_CALLS,
        "runs_per_path": BENCH_RUNS,
        "statistic": "best run's p50/p99 per path",
        "runs_p50_ms": {name: [s["p50_ms"] for s in runs] for name, runs in samples.items()},
        **{f"{name}_p50_ms": p50[name] for name in paths},
        **{f"{name}_p99_ms": p99[name] for name in paths},
        "sidecar_added_p50_ms": round(p50["sidecar"] - p50["floor"], 3),
        "gateway_added_p50_ms": round(p50["gateway"] - p50["floor"], 3),
        "ratio_gateway_to_sidecar_p50": round(p50["gateway"] / p50["sidecar"], 2),
        "ratio_sidecar_to_floor_p50": round(p50["sidecar"] / p50["floor"], 2),
        "ratio_gateway_to_floor_p50": round(p50["gateway"] / p50["floor"], 2),
    }
    if os.environ.get(BENCH_OUT):
        Path(os.environ[BENCH_OUT]).write_text(json.dumps(results, indent=2) + "\n")
    record("gateway bench (p50 ms floor/sidecar/gateway)",
           f"{p50['floor']}/{p50['sidecar']}/{p50['gateway']}")  # fmt: skip
    # The gateway is governed: its path costs more than the floor's.
    assert p50["gateway"] > p50["floor"], results


CRITICAL_PROMPT = "Please EXFILTRATE-NOW the customer table."


def test_quarantine_of_a_locked_agent_cuts_its_gateway_and_release_restores_it(
    agents: Agents, kube: Kube
) -> None:
    """Runs last: it quarantines the locked agent. The quarantine's NetworkPolicy covers the
    gateway's pods, the lock's policies give way to it, the gateway refuses calls, and the
    release brings the lock back and the calls with it."""
    locked = agents.locked
    assert locked.ask(CRITICAL_PROMPT)["status"] == 403
    wait_for(lambda: (locked.status().get("enforcement") or {}).get("action") == "Quarantined",
             "the quarantine", timeout=60)  # fmt: skip
    quarantine = wait_for(lambda: kube.get("networkpolicy", "locked-quarantine", agents.namespace),
                          "the quarantine NetworkPolicy", timeout=60)  # fmt: skip
    values = quarantine["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert "promethios-gateway" in values, quarantine["spec"]["podSelector"]
    wait_for(lambda: kube.get("networkpolicy", "locked-egress-gateway", agents.namespace) is None,
             "the lock's gateway policy to give way", timeout=60)  # fmt: skip
    failed = wait_for(
        lambda: (answer := locked.ask("Say hello.")) and answer["status"] != 200 and answer,
        "calls through the gateway to fail under quarantine", timeout=90, interval=2,
    )  # fmt: skip
    assert failed["status"] in (0, 403), failed  # cut off, or refused by the gateway
    breach = int((locked.status()["enforcement"])["breach"])
    kube.run("patch", "governedagent", locked.name, "-n", agents.namespace, "--type=merge",
             "-p", f'{{"spec": {{"governance": {{"acknowledgedBreach": {breach}}}}}}}')  # fmt: skip
    wait_for(lambda: kube.get("networkpolicy", "locked-egress-gateway", agents.namespace),
             "the lock to come back", timeout=60)  # fmt: skip
    wait_for(lambda: locked.ask("Say hello after release.")["status"] == 200,
             "calls through the gateway after the release", timeout=90, interval=2)  # fmt: skip
    assert not locked.connect(locked.provider_address())["connected"]  # still locked
