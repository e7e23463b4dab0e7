"""A policy change rolls the agent's pod, and violations the old pod had not delivered yet
are not lost.

To make sure the old pod really holds undelivered violations when it is replaced, the test
first cuts the agent's egress to the ingest API with a NetworkPolicy of its own (egress to
the fake provider and to DNS stays open), makes violating calls, checks that none reached
the status, changes the policy, and lifts the cut only once the old pod is terminating:
from then on only the sidecar's hand-over (draining its spool on stop, or a spool that
outlives the pod) can deliver them.

A NetworkPolicy only stops new connections (kube-router, like Calico and Cilium, lets
packets of established connections through), and the sidecar keeps its connection to the
ingest API alive; so the test also deletes the pod's connection-tracking entries on the
node (``conntrack -D``), which makes the cut apply to that connection too.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import AgentEnv, Kube, agent_pods, policy, wait_for
from e2e_platform import Platform

CALLS = 3


@pytest.fixture(scope="module")
def agent(kube: Kube, operator_release: str) -> Iterator[AgentEnv]:
    env = AgentEnv.create(kube, "rollout", "steady")
    yield env
    env.delete()


def ingest_cut(agent: AgentEnv) -> dict[str, Any]:
    """Egress only to the fake provider and to DNS (port 53 anywhere: cluster DNS is on
    the node's address on a local real node, in CoreDNS pods on kind)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "cut-ingest", "namespace": agent.namespace},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/instance": agent.name}},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": {"app": "fake-provider"}}}],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                },
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            ],
        },
    }


def conditions(agent: AgentEnv) -> dict[str, str]:
    return {c["type"]: c["status"] for c in agent.status().get("conditions", [])}


def test_a_policy_change_rolls_the_pod_without_losing_violations(
    agent: AgentEnv, kube: Kube, platform: Platform
) -> None:
    pod = agent.pod()
    old_pod = pod["metadata"]["name"]
    kube.apply(ingest_cut(agent))
    time.sleep(2)  # kube-router syncs a policy change within about a second
    forget_connections(platform, pod["status"]["podIP"])
    # The cut is in force once heartbeats stop arriving (HeartbeatFresh turns False).
    wait_for(lambda: conditions(agent).get("HeartbeatFresh") == "False",
             "heartbeats to stop reaching the ingest API", timeout=90, interval=2)  # fmt: skip
    delivered_before = agent.violations_total()
    for n in range(CALLS):
        answer = agent.ask(f"Rollout check {n}: mail kim.lee{n}@example.com the invoice.")
        assert answer["status"] == 200, answer  # the provider is still reachable
    time.sleep(5)  # a few delivery attempts' worth: none may get through the cut
    assert agent.violations_total() == delivered_before, "the cut did not hold"

    changed = policy(agent.namespace, pii_severity="low")  # a new config hash: a new pod
    kube.apply(changed)
    terminating = wait_for(
        lambda: _terminating(kube, agent, old_pod), "the old pod to be replaced", timeout=120
    )
    kube.run("delete", "networkpolicy", "cut-ingest", "-n", agent.namespace)
    new_pods = wait_for(
        lambda: [p for p in agent_pods(kube, agent.namespace, agent.name)
                 if p["metadata"]["name"] != old_pod],
        "the new pod", timeout=120,
    )  # fmt: skip
    assert new_pods and terminating
    wait_for(
        lambda: agent.violations_total() >= delivered_before + CALLS,
        f"the {CALLS} violations the old pod held to be delivered "
        f"(status total was {delivered_before})",
        timeout=120,
        interval=2,
    )
    pii = [v for v in agent.governance()["recentViolations"] if v["type"].startswith("pii")]
    assert len(pii) >= CALLS, pii


def forget_connections(platform: Platform, pod_ip: str) -> None:
    """Delete the node's connection-tracking entries of flows the pod opened."""
    argv = platform.in_node_netns("conntrack", "-D", "-s", pod_ip)
    result = subprocess.run(argv, capture_output=True, text=True)
    # Exit status 1 with "0 flow entries" just means there was nothing to delete.
    assert result.returncode == 0 or "0 flow entries" in result.stderr, result.stderr


def _terminating(kube: Kube, agent: AgentEnv, name: str) -> bool:
    """The old pod is being deleted (or already gone)."""
    pod = kube.get("pod", name, agent.namespace)
    return pod is None or bool(pod["metadata"].get("deletionTimestamp"))
