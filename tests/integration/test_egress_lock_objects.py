"""The egress lock against a real control plane: a Locked agent's gateway and
NetworkPolicies exist, owned by the agent and admitted under Pod Security ``restricted``;
unlocking removes them; the API server refuses a bad allow list naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import wait_for
from test_operator import Kube, Operator

LOCKED_AGENT = """
apiVersion: governance.promethios.ai/v1alpha1
kind: GovernedAgent
metadata: {{name: bot, namespace: {ns}}}
spec:
  image: example.com/agent:1
  modelProvider: {{type: openai, credentialsSecretRef: {{name: openai-credentials}}}}
  governance: {{policyRef: {{name: policy}}, egress: {egress}}}
"""

POLICY = """
apiVersion: governance.promethios.ai/v1alpha1
kind: GovernancePolicy
metadata: {{name: policy, namespace: {ns}}}
spec:
  egress:
    allow: {allow}
"""

LOCK_OBJECTS = [
    ("deployment", "bot-gateway"),
    ("service", "bot-gateway"),
    ("networkpolicy", "bot-egress-agent"),
    ("networkpolicy", "bot-egress-gateway"),
]


@pytest.fixture(scope="module")
def lock_operator(cluster: Any, crds_installed: list[str], tmp_path_factory: Any) -> Iterator[None]:
    log_path = tmp_path_factory.mktemp("egress-operator") / "operator.log"
    system_ns = f"t-egress-system-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", system_ns)
    handle = Operator(Path(cluster.kubeconfig), log_path, system_ns)
    handle.start()
    try:
        yield
    finally:
        handle.stop()
        cluster.kubectl("delete", "namespace", "--wait=false", system_ns, check=False)


@pytest.fixture
def kube(cluster: Any, namespace: str, lock_operator: None) -> Kube:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    k = Kube(cluster, namespace)
    k.run("create", "secret", "generic", "openai-credentials", "--from-literal=apiKey=sk-test")
    return k


def egress_status(kube: Kube) -> dict[str, Any]:
    agent = kube.get("ga", "bot") or {}
    return dict((agent.get("status") or {}).get("egress") or {})


def test_locked_agent_gets_its_gateway_and_policies_and_unlocking_removes_them(
    kube: Kube,
) -> None:
    kube.apply(POLICY.format(ns=kube.ns, allow='[{cidr: "10.9.0.0/16", ports: [{port: 443}]}]'))
    kube.apply(LOCKED_AGENT.format(ns=kube.ns, egress="Locked"))
    wait_for(lambda: egress_status(kube).get("placement") == "Gateway", "status.egress")
    status = egress_status(kube)
    assert status["mode"] == "Locked" and status["gateway"] == "bot-gateway"
    assert status["networkPolicies"] == ["bot-egress-agent", "bot-egress-gateway"]
    uid = (kube.get("ga", "bot") or {})["metadata"]["uid"]
    for kind, name in LOCK_OBJECTS:
        child = wait_for(lambda kind=kind, name=name: kube.get(kind, name), f"{kind} {name}")
        assert [o["uid"] for o in child["metadata"]["ownerReferences"]] == [uid], name
    agent_policy = kube.get("networkpolicy", "bot-egress-agent") or {}
    allowed = {
        "to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    assert allowed in agent_policy["spec"]["egress"]
    # The agent's pod has no sidecar; the gateway's pod runs it, admitted as restricted.
    deployment = kube.get("deployment", "bot") or {}
    pod_spec = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod_spec["containers"]] == ["agent"]
    assert not pod_spec.get("initContainers")
    gateway_pods = wait_for(
        lambda: kube.items("pods", "app.kubernetes.io/name=promethios-gateway"),
        "the gateway's pod (admitted under restricted)",
    )
    assert [c["name"] for c in gateway_pods[0]["spec"]["containers"]] == ["governance-sidecar"]
    kube.run("wait", "--for=condition=Ready", "governedagent/bot", "--timeout=60s")

    kube.patch("governedagent", "bot", {"spec": {"governance": {"egress": "Open"}}})
    for kind, name in LOCK_OBJECTS:
        wait_for(lambda kind=kind, name=name: kube.get(kind, name) is None, f"{kind} {name} gone")
    wait_for(lambda: egress_status(kube).get("placement") == "Sidecar", "placement Sidecar")
    deployment = kube.get("deployment", "bot") or {}
    sidecars = deployment["spec"]["template"]["spec"].get("initContainers") or []
    assert [c["name"] for c in sidecars] == ["governance-sidecar"]


@pytest.mark.parametrize(
    ("allow", "message"),
    [
        ('[{cidr: "10.0.0.0/8", podSelector: {}}]', "set either cidr or podSelector"),
        ("[{ports: [{port: 80}]}]", "set cidr, podSelector or namespaceSelector"),
        ('[{cidr: "ten/8"}]', "spec.egress.allow[0].cidr"),
    ],
)
def test_bad_allow_list_is_refused_naming_the_field(kube: Kube, allow: str, message: str) -> None:
    result = kube.cluster.kubectl(
        "-n", kube.ns, "apply", "-f", "-", input=POLICY.format(ns=kube.ns, allow=allow), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_unknown_egress_mode_is_refused(kube: Kube) -> None:
    result = kube.cluster.kubectl(
        "-n", kube.ns, "apply", "-f", "-",
        input=LOCKED_AGENT.format(ns=kube.ns, egress="Closed"), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.governance.egress" in result.stderr, result.stderr
