"""The egress lock's builders: the gateway, the agent's locked pod, the NetworkPolicies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from operator_fakes import SETTINGS, make_agent

from promethios.api.egress import EgressPolicy
from promethios.api.metadata import LABEL_INSTANCE, LABEL_NAME
from promethios.builders import build_deployment, build_network_policy, build_service
from promethios.builders.gateway import (
    GATEWAY_APP,
    build_gateway_deployment,
    build_gateway_service,
    gateway_name,
    gateway_url,
)
from promethios.builders.meta import APP_NAME, selector_labels
from promethios.builders.network import (
    build_agent_egress_policy,
    build_gateway_network_policy,
    url_egress,
)
from promethios.builders.sidecar import IngestPeer
from promethios.builders.workload import SIDECAR_CONTAINER

LOCKED = {"policyRef": {"name": "default-policy"}, "egress": "Locked"}
PEER = IngestPeer(namespace="promethios-system", pod_labels={"app": "ingest"}, port=8443)


def locked_agent(**overrides: Any) -> Any:
    return make_agent(governance=LOCKED, **overrides)


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_gateway_name_fits_a_service_name() -> None:
    assert gateway_name("support-bot") == "support-bot-gateway"
    long = gateway_name("a" * 63)
    assert len(long) <= 63 and long.endswith("-gateway")
    assert gateway_name("a" * 63) != gateway_name("a" * 62 + "b")


def test_locked_pod_has_no_sidecar_and_no_secret_volume() -> None:
    agent = locked_agent()
    pod = build_deployment(agent, SETTINGS, "hash", 1, gateway_url(agent))["spec"]["template"]
    spec = pod["spec"]
    assert [c["name"] for c in spec["containers"]] == ["agent"]
    assert "initContainers" not in spec and "volumes" not in spec
    assert pod["metadata"]["labels"][LABEL_NAME] == APP_NAME


def test_locked_agent_calls_the_gateway_service() -> None:
    agent = locked_agent()
    spec = build_deployment(agent, SETTINGS, "h", 1, gateway_url(agent))["spec"]["template"]
    variables = env(spec["spec"]["containers"][0])
    url = "http://support-bot-gateway.team-a.svc:15001"
    assert variables["OPENAI_BASE_URL"] == f"{url}/v1"
    assert variables["PROMETHIOS_REPORTING_URL"] == url


def test_locked_agent_service_has_no_sidecar_metrics_port() -> None:
    ports = build_service(locked_agent(), sidecar=False)["spec"]["ports"]
    assert [p["name"] for p in ports] == ["http"]


def test_gateway_runs_the_sidecar_with_its_secrets_as_a_plain_container() -> None:
    agent = locked_agent()
    deployment = build_gateway_deployment(agent, SETTINGS, "cfg-hash", None)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["name"] == SIDECAR_CONTAINER
    assert container["command"][:2] == ["promethios", "sidecar"]
    assert "restartPolicy" not in container  # not an init container here
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["promethios-api-key"]["secret"]["secretName"] == "support-bot-api-key"
    assert volumes["promethios-provider-credential"]["secret"]["secretName"] == (
        "openai-credentials"
    )
    assert pod["metadata"]["annotations"]["promethios.ai/config-hash"] == "cfg-hash"
    assert deployment["spec"]["replicas"] == 1


def test_gateway_pods_are_not_selected_by_the_agent_selector() -> None:
    agent = locked_agent()
    pod_labels = build_gateway_deployment(agent, SETTINGS, "h", 1)["spec"]["template"]["metadata"]
    selector = selector_labels(agent)
    assert not selector.items() <= pod_labels["labels"].items()
    assert pod_labels["labels"][LABEL_NAME] == GATEWAY_APP
    assert pod_labels["labels"][LABEL_INSTANCE] == "support-bot"


def test_gateway_scales_to_zero_with_the_agent() -> None:
    assert build_gateway_deployment(locked_agent(), SETTINGS, "h", 0)["spec"]["replicas"] == 0
    assert build_gateway_deployment(locked_agent(), SETTINGS, "h", 5)["spec"]["replicas"] == 1


def test_gateway_service_exposes_the_proxy() -> None:
    service = build_gateway_service(locked_agent())
    assert service["metadata"]["name"] == "support-bot-gateway"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "proxy": 15001,
        "metrics": 15090,
    }
    assert service["spec"]["selector"][LABEL_NAME] == GATEWAY_APP


def test_agent_egress_allows_dns_the_gateway_and_the_allow_list_only() -> None:
    agent = locked_agent()
    allowed = EgressPolicy.model_validate(
        {
            "allow": [
                {"podSelector": {"matchLabels": {"app": "db"}}, "ports": [{"port": 5432}]},
                {"cidr": "10.20.0.0/16"},
                {"namespaceSelector": {"matchLabels": {"team": "shared"}}},
            ]
        }
    )
    policy = build_agent_egress_policy(agent, allowed)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"]  # the agent still serves its port
    assert spec["podSelector"] == {"matchLabels": selector_labels(agent)}
    dns, gateway, db, cidr, namespace = spec["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    gateway_pods = {LABEL_NAME: GATEWAY_APP, LABEL_INSTANCE: "support-bot"}
    assert gateway == {
        "to": [{"podSelector": {"matchLabels": gateway_pods}}],
        "ports": [{"port": 15001, "protocol": "TCP"}],
    }
    assert db == {
        "to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    assert cidr == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}
    assert namespace == {"to": [{"namespaceSelector": {"matchLabels": {"team": "shared"}}}]}


def test_agent_egress_without_an_allow_list_reaches_only_dns_and_the_gateway() -> None:
    spec = build_agent_egress_policy(locked_agent(), None)["spec"]
    assert len(spec["egress"]) == 2


def test_gateway_admits_only_its_agents_pods_to_the_proxy() -> None:
    agent = locked_agent()
    spec = build_gateway_network_policy(agent, SETTINGS, "https://api.openai.com/v1")["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    proxy, metrics = spec["ingress"]
    assert proxy["from"] == [{"podSelector": {"matchLabels": selector_labels(agent)}}]
    assert proxy["ports"] == [{"port": 15001, "protocol": "TCP"}]
    assert "from" not in metrics and metrics["ports"][0]["port"] == 15090


def test_gateway_egress_reaches_dns_the_ingest_and_the_provider() -> None:
    settings = replace(SETTINGS, ingest_peer=PEER)
    spec = build_gateway_network_policy(locked_agent(), settings, "https://api.openai.com/v1")
    dns, ingest, provider = spec["spec"]["egress"]
    assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53}
    assert ingest["ports"] == [{"port": 8443, "protocol": "TCP"}]
    assert ingest["to"][0]["podSelector"] == {"matchLabels": {"app": "ingest"}}
    assert provider == {"ports": [{"port": 443, "protocol": "TCP"}]}


def test_url_egress_pins_an_address_and_opens_only_the_port_of_a_name() -> None:
    assert url_egress("http://10.1.2.3:8080/v1") == {
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
    }
    assert url_egress("http://[fd00::1]/v1")["to"] == [{"ipBlock": {"cidr": "fd00::1/128"}}]
    assert url_egress("http://fake-provider.ns.svc:8080/v1") == {
        "ports": [{"port": 8080, "protocol": "TCP"}]
    }


def test_ingest_by_url_when_the_operator_knows_no_ingest_pods() -> None:
    spec = build_gateway_network_policy(locked_agent(), SETTINGS, "https://api.openai.com/v1")
    ingest = spec["spec"]["egress"][1]
    assert ingest == {"ports": [{"port": 8443, "protocol": "TCP"}]}  # the default ingest URL


def test_quarantine_of_a_locked_agent_covers_its_gateway() -> None:
    agent = locked_agent()
    selector = build_network_policy(agent, SETTINGS, with_gateway=True)["spec"]["podSelector"]
    assert selector["matchLabels"] == {LABEL_INSTANCE: "support-bot"}
    assert selector["matchExpressions"] == [
        {"key": LABEL_NAME, "operator": "In", "values": [APP_NAME, GATEWAY_APP]}
    ]


def test_quarantine_of_an_open_agent_is_unchanged() -> None:
    agent = make_agent()
    selector = build_network_policy(agent, SETTINGS)["spec"]["podSelector"]
    assert selector == {"matchLabels": selector_labels(agent)}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_pod_labels_cannot_dress_the_agent_as_its_gateway() -> None:
    # The namespace user writes spec.podLabels: copying the gateway's labels onto the
    # agent's pods would put them under the gateway's NetworkPolicy (egress to the
    # provider) and out of the agent's own lock.
    agent = locked_agent()
    gateway_pod = build_gateway_deployment(agent, SETTINGS, "h", 1)["spec"]["template"]
    disguise = {**gateway_pod["metadata"]["labels"], "team": "a"}
    dressed = locked_agent(podLabels=disguise)
    pod = build_deployment(dressed, SETTINGS, "h", 1, gateway_url(dressed))["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "a"  # the user's labels do reach the pod
    gateway_policy = build_gateway_network_policy(dressed, SETTINGS, "https://api.openai.com/v1")
    agent_policy = build_agent_egress_policy(dressed, None)
    assert not _selects(gateway_policy["spec"]["podSelector"]["matchLabels"], labels)
    assert _selects(agent_policy["spec"]["podSelector"]["matchLabels"], labels)
