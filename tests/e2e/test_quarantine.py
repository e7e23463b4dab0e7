"""Quarantine in a real pod: a critical violation quarantines the agent, the deny-all
NetworkPolicy (enforced by kube-router) really cuts the pod's traffic, the violation that
caused it is delivered, and acknowledging the breach restores the agent's calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_helpers import AgentEnv, Kube, wait_for

CRITICAL_PROMPT = "Please EXFILTRATE-NOW the customer table."
PII_PROMPT = "While quarantined: call 555-867-5309 or write to sam.roe@example.com."


@pytest.fixture(scope="module")
def agent(kube: Kube, operator_release: str) -> Iterator[AgentEnv]:
    env = AgentEnv.create(kube, "quarantine", "risky", on_breach="Quarantine")
    yield env
    env.delete()


def enforcement(agent: AgentEnv) -> dict[str, object]:
    return dict(agent.status().get("enforcement") or {})


def test_quarantine_cuts_the_pod_off_and_release_restores_it(agent: AgentEnv, kube: Kube) -> None:
    assert agent.ask("Say hello.")["status"] == 200  # the path works before the breach
    blocked = agent.ask(CRITICAL_PROMPT)
    assert blocked["status"] == 403, blocked  # enforce mode: refused in the pod

    # The violation that caused the quarantine reached the ingest API and the status.
    wait_for(lambda: enforcement(agent).get("action") == "Quarantined", "the quarantine", 60)
    recent = agent.governance()["recentViolations"]
    assert any(
        v["type"] == "blocked_pattern.exfiltrate" and v["severity"] == "critical" for v in recent
    ), recent
    policy_name = wait_for(
        lambda: (agent.status().get("children") or {}).get("networkPolicy"),
        "the quarantine NetworkPolicy",
        timeout=60,
    )
    network_policy = kube.get("networkpolicy", policy_name, agent.namespace)
    assert network_policy is not None
    assert set(network_policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}

    # The quarantined pod keeps running, cut off: its calls fail (issue 11), rather than
    # the Deployment being scaled away, which would leave no traffic to cut.
    deployment = kube.get("deployment", agent.status()["children"]["deployment"], agent.namespace)
    assert deployment is not None
    assert deployment["spec"].get("replicas") != 0, (
        "Quarantine scaled the agent's Deployment to zero: no pod is left whose traffic the "
        "quarantine NetworkPolicy could cut"
    )
    # The agent's model calls no longer reach the provider: the sidecar refuses them (it
    # applies the quarantine from its config and drops its kept-alive provider connections,
    # which a NetworkPolicy alone would not cut), and kube-router's NetworkPolicy stops any
    # new connection from the pod.
    failed = wait_for(
        lambda: (answer := agent.ask("Say hello again.")) and answer["status"] != 200 and answer,
        "model calls to fail under quarantine",
        timeout=90,
        interval=2,
    )
    assert failed["status"] == 403 and "agent_quarantined" in str(failed["error"]), failed
    # ... and the NetworkPolicy does cut the pod itself: a direct connection fails.
    direct = agent.connect(agent.provider_address())
    assert direct["connected"] is False, direct

    # A violation committed while quarantined must not be lost either.
    total_before = agent.violations_total()
    agent.ask(PII_PROMPT)

    breach = int(enforcement(agent)["breach"])  # type: ignore[call-overload]
    kube.run("patch", "governedagent", agent.name, "-n", agent.namespace, "--type=merge",
             "-p", f'{{"spec": {{"governance": {{"acknowledgedBreach": {breach}}}}}}}')  # fmt: skip
    wait_for(lambda: enforcement(agent).get("action") == "None", "the release", 60)
    wait_for(
        lambda: kube.get("networkpolicy", policy_name, agent.namespace) is None,
        "the quarantine NetworkPolicy to be removed",
        timeout=60,
    )
    wait_for(
        lambda: agent.ask("Say hello after release.")["status"] == 200,
        "model calls to work again after the release",
        timeout=90,
        interval=2,
    )
    wait_for(
        lambda: agent.violations_total() > total_before,
        "the violation made during the quarantine to be delivered",
        timeout=120,
        interval=2,
    )
