"""Pure builders: the manifests the operator applies for one GovernedAgent."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from promethios.api.metadata import ANNOTATION_CONFIG_HASH
from promethios.api.policy import BlockedPattern, GovernancePolicySpec
from promethios.api.sidecarconfig import (
    API_KEY_MOUNT,
    PROVIDER_CREDENTIAL_MOUNT,
    SIDECAR_METRICS_PORT,
    SIDECAR_PROXY_PORT,
    SidecarConfig,
)
from promethios.builders import (
    BuildSettings,
    KeyState,
    build_api_key_secret,
    build_config_map,
    build_deployment,
    build_network_policy,
    build_service,
    build_sidecar_config,
    default_base_url,
    labels,
    owner_reference,
)
from promethios.builders.meta import ChildNames
from promethios.builders.sidecar import DEFAULT_SIDECAR_IMAGE
from promethios.builders.workload import AGENT_CONTAINER, SIDECAR_CONTAINER

SETTINGS = BuildSettings(ingest_url="http://ingest.promethios-system.svc:8443")


def deployment(agent: Any, settings: BuildSettings = SETTINGS, replicas: int | None = None) -> Any:
    return build_deployment(agent, settings, "abc123", replicas)


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = manifest["spec"]["template"]["spec"]
    every = [*pod.get("initContainers", []), *pod["containers"]]
    return {c["name"]: c for c in every}


def all_children(agent: Any) -> list[dict[str, Any]]:
    config = build_sidecar_config(agent, "default-policy", GovernancePolicySpec(), SETTINGS)
    config_map, digest = build_config_map(agent, config)
    return [
        build_api_key_secret(agent, KeyState("k", 0)),
        config_map,
        build_deployment(agent, SETTINGS, digest, None),
        build_service(agent),
        build_network_policy(agent, SETTINGS),
    ]


# --- Pod Security "restricted" ---------------------------------------------------------


def test_pod_security_context_is_restricted(agent_factory: Any) -> None:
    pod = deployment(agent_factory())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("name", [AGENT_CONTAINER, SIDECAR_CONTAINER])
def test_every_container_is_restricted(agent_factory: Any, name: str) -> None:
    context = containers(deployment(agent_factory()))[name]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_sidecar_root_filesystem_is_read_only_with_an_emptydir_spool(agent_factory: Any) -> None:
    manifest = deployment(agent_factory())
    sidecar = containers(manifest)[SIDECAR_CONTAINER]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["runAsUser"] > 0
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    spool = next(m for m in sidecar["volumeMounts"] if m["mountPath"].endswith("spool"))
    assert "emptyDir" in volumes[spool["name"]]


def test_service_account_token_not_mounted_unless_asked(agent_factory: Any) -> None:
    assert (
        deployment(agent_factory())["spec"]["template"]["spec"]["automountServiceAccountToken"]
        is False
    )
    asked = agent_factory(automountServiceAccountToken=True, serviceAccountName="bot")
    pod = deployment(asked)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "bot"


# --- credentials stay in the sidecar ------------------------------------------------------


def test_agent_container_has_no_credentials(agent_factory: Any) -> None:
    agent = agent_factory(env=[{"name": "LOG_LEVEL", "value": "debug"}])
    manifest = deployment(agent)
    agent_container = containers(manifest)[AGENT_CONTAINER]
    assert "volumeMounts" not in agent_container
    assert "envFrom" not in agent_container
    assert all("valueFrom" not in var for var in agent_container["env"])
    text = json.dumps(agent_container)
    assert "openai-credentials" not in text
    assert ChildNames.of(agent.name).secret not in text


def test_secrets_are_mounted_into_the_sidecar_only_with_items(agent_factory: Any) -> None:
    agent = agent_factory()
    manifest = deployment(agent)
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    secret_volumes = {name for name, v in volumes.items() if "secret" in v}
    assert {volumes[n]["secret"]["secretName"] for n in secret_volumes} == {
        "openai-credentials",
        "support-bot-api-key",
    }
    for name in secret_volumes:
        assert len(volumes[name]["secret"]["items"]) == 1
    sidecar_mounts = {m["name"]: m for m in containers(manifest)[SIDECAR_CONTAINER]["volumeMounts"]}
    assert secret_volumes <= set(sidecar_mounts)
    paths = {sidecar_mounts[n]["mountPath"] for n in secret_volumes}
    assert paths == {API_KEY_MOUNT, PROVIDER_CREDENTIAL_MOUNT}
    assert all(sidecar_mounts[n]["readOnly"] for n in secret_volumes)


def test_no_provider_volume_without_a_credentials_ref(agent_factory: Any) -> None:
    agent = agent_factory(modelProvider={"type": "custom", "baseUrl": "http://llm.local/v1"})
    manifest = deployment(agent)
    names = [
        v["secret"]["secretName"]
        for v in manifest["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    ]
    assert names == ["support-bot-api-key"]


def env_of(manifest: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["value"] for v in containers(manifest)[AGENT_CONTAINER]["env"]}


def test_openai_agent_env_points_at_the_sidecar(agent_factory: Any) -> None:
    env = env_of(deployment(agent_factory()))
    assert env["OPENAI_BASE_URL"] == f"http://127.0.0.1:{SIDECAR_PROXY_PORT}/v1"
    assert env["PROMETHIOS_REPORTING_URL"] == f"http://127.0.0.1:{SIDECAR_PROXY_PORT}"
    assert env["PROMETHIOS_AGENT_ID"] == "team-a/support-bot"
    assert "ANTHROPIC_BASE_URL" not in env


def test_anthropic_agent_env_has_no_v1_suffix(agent_factory: Any) -> None:
    agent = agent_factory(modelProvider={"type": "anthropic"})
    env = env_of(deployment(agent))
    assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{SIDECAR_PROXY_PORT}"
    assert "OPENAI_BASE_URL" not in env


def test_user_env_cannot_override_operator_env(agent_factory: Any) -> None:
    agent = agent_factory(
        env=[
            {"name": "OPENAI_BASE_URL", "value": "https://api.openai.com/v1"},
            {"name": "A", "value": "1"},
            {"name": "A", "value": "2"},
        ]
    )
    variables = containers(deployment(agent))[AGENT_CONTAINER]["env"]
    names = [v["name"] for v in variables]
    assert len(names) == len(set(names))  # duplicates would break server-side apply
    assert env_of(deployment(agent))["OPENAI_BASE_URL"].startswith("http://127.0.0.1")
    assert env_of(deployment(agent))["A"] == "2"


# --- sidecar flavour, replicas, rollout trigger ------------------------------------------


def test_native_sidecar_is_a_restartable_init_container(agent_factory: Any) -> None:
    pod = deployment(agent_factory(), BuildSettings(native_sidecar=True))["spec"]["template"][
        "spec"
    ]
    assert [c["name"] for c in pod["initContainers"]] == [SIDECAR_CONTAINER]
    assert pod["initContainers"][0]["restartPolicy"] == "Always"
    assert [c["name"] for c in pod["containers"]] == [AGENT_CONTAINER]


def test_plain_sidecar_before_1_29(agent_factory: Any) -> None:
    pod = deployment(agent_factory(), BuildSettings(native_sidecar=False))["spec"]["template"][
        "spec"
    ]
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == [AGENT_CONTAINER, SIDECAR_CONTAINER]
    assert "restartPolicy" not in pod["containers"][1]


def test_replicas_field_omitted_when_unset(agent_factory: Any) -> None:
    assert "replicas" not in deployment(agent_factory())["spec"]
    assert deployment(agent_factory(), replicas=0)["spec"]["replicas"] == 0
    assert deployment(agent_factory(), replicas=3)["spec"]["replicas"] == 3


def test_config_hash_annotates_the_pod_template(agent_factory: Any) -> None:
    template = deployment(agent_factory())["spec"]["template"]
    assert template["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] == "abc123"


def test_sidecar_image_default_and_override(agent_factory: Any) -> None:
    default = containers(deployment(agent_factory(), BuildSettings()))[SIDECAR_CONTAINER]
    assert default["image"] == DEFAULT_SIDECAR_IMAGE
    assert default["command"] == [
        "promethios",
        "sidecar",
        "--config",
        "/etc/promethios/config.json",
    ]
    override = agent_factory(sidecar={"image": "registry.local/sidecar:dev"})
    assert containers(deployment(override))[SIDECAR_CONTAINER]["image"] == (
        "registry.local/sidecar:dev"
    )


def test_agent_container_settings_are_passed_through(agent_factory: Any) -> None:
    agent = agent_factory(
        command=["python"],
        args=["-m", "bot"],
        port=9000,
        imagePullPolicy="Never",
        resources={"limits": {"memory": "1Gi"}},
        podLabels={"team": "a"},
        podAnnotations={"note": "x"},
    )
    manifest = deployment(agent)
    container = containers(manifest)[AGENT_CONTAINER]
    assert container["command"] == ["python"] and container["args"] == ["-m", "bot"]
    assert container["ports"][0]["containerPort"] == 9000
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    metadata = manifest["spec"]["template"]["metadata"]
    assert metadata["labels"]["team"] == "a" and metadata["annotations"]["note"] == "x"
    assert manifest["spec"]["selector"]["matchLabels"].items() <= metadata["labels"].items()


# --- ownership and labels ---------------------------------------------------------------


def test_every_child_has_a_controller_owner_reference_and_standard_labels(
    agent_factory: Any,
) -> None:
    agent = agent_factory()
    for child in all_children(agent):
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["ownerReferences"] == [owner_reference(agent)]
        assert meta["ownerReferences"][0]["controller"] is True
        for key in ("name", "instance", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in meta["labels"], (child["kind"], key)
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "promethios-operator"
        assert meta["labels"]["promethios.ai/agent"] == "support-bot"


def test_owner_reference_points_at_the_agent(agent_factory: Any) -> None:
    ref = owner_reference(agent_factory())
    assert ref["apiVersion"] == "governance.promethios.ai/v1alpha1"
    assert ref["kind"] == "GovernedAgent"
    assert ref["name"] == "support-bot" and ref["uid"] == agent_factory().uid
    assert ref["blockOwnerDeletion"] is True


def test_labels_name_the_component(agent_factory: Any) -> None:
    assert labels(agent_factory(), "api-key")["app.kubernetes.io/component"] == "api-key"


# --- the API-key Secret contract --------------------------------------------------------


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_api_key_secret_follows_the_ingest_contract(agent_factory: Any) -> None:
    agent = agent_factory()
    secret = build_api_key_secret(agent, KeyState("the-key", 0))
    assert secret["metadata"]["name"] == "support-bot-api-key"
    assert secret["type"] == "Opaque"
    lab = secret["metadata"]["labels"]
    assert lab["app.kubernetes.io/managed-by"] == "promethios-operator"
    assert lab["promethios.ai/component"] == "api-key"
    assert lab["promethios.ai/agent"] == "support-bot"
    annotations = secret["metadata"]["annotations"]
    assert annotations["promethios.ai/governance-identity"] == f"ga-{agent.uid}"
    data = decoded(secret)
    assert data["apiKey"] == "the-key"
    assert data["apiKeySha256"] == hashlib.sha256(b"the-key").hexdigest()
    assert "previousApiKeySha256" not in data
    assert "promethios.ai/previous-key-expires-at" not in annotations


def test_api_key_secret_during_rotation(agent_factory: Any, now: Any) -> None:
    state = KeyState("new", 1, previous_sha256="ab" * 32, previous_expires_at=now)
    secret = build_api_key_secret(agent_factory(), state)
    assert decoded(secret)["previousApiKeySha256"] == "ab" * 32
    assert secret["metadata"]["annotations"]["promethios.ai/previous-key-expires-at"] == (
        "2025-01-01T12:00:00Z"
    )


def test_key_state_repr_hides_the_key() -> None:
    assert "s3cret" not in repr(KeyState("s3cret", 0))


def test_ingest_keystore_accepts_the_secret(agent_factory: Any, now: Any) -> None:
    from promethios.ingest.keystore import entries_from_secret

    state = KeyState("new", 1, previous_sha256="ab" * 32, previous_expires_at=now)
    entries = entries_from_secret(build_api_key_secret(agent_factory(), state))
    assert {e.digest for e in entries} == {hashlib.sha256(b"new").hexdigest(), "ab" * 32}
    assert {e.agent_id for e in entries} == {"team-a/support-bot"}


# --- sidecar configuration ----------------------------------------------------------------


def test_sidecar_config_resolves_provider_defaults(agent_factory: Any) -> None:
    config = build_sidecar_config(
        agent_factory(), "default-policy", GovernancePolicySpec(), SETTINGS
    )
    assert config.provider.base_url == "https://api.openai.com/v1"
    assert config.provider.credential_file == f"{PROVIDER_CREDENTIAL_MOUNT}/credential"
    assert config.ingest.api_key_file == f"{API_KEY_MOUNT}/apiKey"
    assert config.ingest.url == SETTINGS.ingest_url
    assert config.agent_id == "team-a/support-bot"
    assert config.governance_identity == agent_factory().governance_identity
    assert config.proxy_port == SIDECAR_PROXY_PORT and config.metrics_port == SIDECAR_METRICS_PORT


def test_provider_base_urls() -> None:
    assert default_base_url("openai") == "https://api.openai.com/v1"
    assert default_base_url("anthropic") == "https://api.anthropic.com"
    with pytest.raises(ValueError):
        default_base_url("custom")


def test_sidecar_config_carries_governance_and_explicit_base_url(agent_factory: Any) -> None:
    agent = agent_factory(
        modelProvider={"type": "custom", "baseUrl": "http://llm.local/v1", "allowedModels": ["m"]},
        governance={"policyRef": {"name": "p"}, "mode": "audit", "heartbeatIntervalSeconds": 7},
    )
    config = build_sidecar_config(agent, "p", GovernancePolicySpec(), SETTINGS)
    assert config.provider.base_url == "http://llm.local/v1"
    assert config.provider.credential_file is None
    assert config.provider.allowed_models == ["m"]
    assert config.mode == "audit" and config.policy_name == "p"
    assert config.ingest.heartbeat_interval_seconds == 7


def test_config_map_round_trips_through_the_sidecar_model(agent_factory: Any) -> None:
    config = build_sidecar_config(
        agent_factory(), "default-policy", GovernancePolicySpec(), SETTINGS
    )
    config_map, digest = build_config_map(agent_factory(), config)
    text = config_map["data"]["config.json"]
    assert SidecarConfig.model_validate_json(text) == config
    assert config_map["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] == digest
    assert 'apiKey": "' not in text  # paths to secrets only, never secret values


def test_config_hash_changes_with_the_policy_only(agent_factory: Any) -> None:
    def digest(agent: Any, policy: GovernancePolicySpec) -> str:
        return build_config_map(agent, build_sidecar_config(agent, "p", policy, SETTINGS))[1]

    base = digest(agent_factory(), GovernancePolicySpec())
    assert digest(agent_factory(), GovernancePolicySpec()) == base
    assert digest(agent_factory(replicas=5, image="other:2"), GovernancePolicySpec()) == base
    stricter = GovernancePolicySpec(blocked_patterns=[BlockedPattern(name="x", pattern="secret")])
    assert digest(agent_factory(), stricter) != base


CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TLS_SETTINGS = BuildSettings(
    ingest_url="https://ingest.promethios-system.svc:8443", ca_bundle=CA_PEM
)


def test_the_ca_bundle_travels_beside_config_json(agent_factory: Any) -> None:
    agent = agent_factory()
    config = build_sidecar_config(agent, "p", GovernancePolicySpec(), TLS_SETTINGS)
    assert config.ingest.ca_file == "/etc/promethios/ca.crt"
    assert config.ingest.url.startswith("https://")
    config_map, digest = build_config_map(agent, config, TLS_SETTINGS.ca_bundle)
    assert config_map["data"]["ca.crt"] == CA_PEM
    assert '"caFile": "/etc/promethios/ca.crt"' in config_map["data"]["config.json"]
    pod = build_deployment(agent, TLS_SETTINGS, digest, None)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap")]
    assert volume["configMap"]["items"] == [
        {"key": "config.json", "path": "config.json"},
        {"key": "ca.crt", "path": "ca.crt"},
    ]
    mounts = containers(build_deployment(agent, TLS_SETTINGS, digest, None))
    sidecar_mounts = {m["name"]: m["mountPath"] for m in mounts[SIDECAR_CONTAINER]["volumeMounts"]}
    assert sidecar_mounts[volume["name"]] == "/etc/promethios"
    assert "volumeMounts" not in mounts[AGENT_CONTAINER]


def test_no_ca_bundle_means_no_ca_file_and_no_ca_key(agent_factory: Any) -> None:
    agent = agent_factory()
    config = build_sidecar_config(agent, "p", GovernancePolicySpec(), SETTINGS)
    assert config.ingest.ca_file is None
    config_map, digest = build_config_map(agent, config)
    assert set(config_map["data"]) == {"config.json"}
    assert '"caFile": null' in config_map["data"]["config.json"]
    pod = build_deployment(agent, SETTINGS, digest, None)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap")]
    assert [item["key"] for item in volume["configMap"]["items"]] == ["config.json"]


def test_a_new_ca_bundle_rolls_the_pods(agent_factory: Any) -> None:
    agent = agent_factory()
    config = build_sidecar_config(agent, "p", GovernancePolicySpec(), TLS_SETTINGS)
    first = build_config_map(agent, config, CA_PEM)[1]
    assert build_config_map(agent, config, CA_PEM)[1] == first
    assert build_config_map(agent, config, CA_PEM + CA_PEM)[1] != first


# --- Service and NetworkPolicy ------------------------------------------------------------


def test_service_exposes_agent_and_metrics_ports(agent_factory: Any) -> None:
    service = build_service(agent_factory(port=9000))
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["port"] == 9000 and ports["http"]["targetPort"] == "http"
    assert ports["metrics"]["port"] == SIDECAR_METRICS_PORT
    assert (
        service["spec"]["selector"]
        == deployment(agent_factory())["spec"]["selector"]["matchLabels"]
    )


def test_network_policy_denies_everything(agent_factory: Any) -> None:
    policy = build_network_policy(agent_factory(), SETTINGS)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == (
        "support-bot"
    )


def test_manifests_carry_an_applied_hash_that_tracks_content(agent_factory: Any) -> None:
    first = build_service(agent_factory())
    again = build_service(agent_factory())
    other = build_service(agent_factory(port=9001))
    key = "promethios.ai/applied-hash"
    assert first["metadata"]["annotations"][key] == again["metadata"]["annotations"][key]
    assert first["metadata"]["annotations"][key] != other["metadata"]["annotations"][key]


def test_sidecar_probes_use_its_declared_metrics_port(agent_factory: Any) -> None:
    sidecar = containers(deployment(agent_factory()))[SIDECAR_CONTAINER]
    declared = {port["name"] for port in sidecar["ports"]}
    probes = {kind: sidecar[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {p["httpGet"]["port"] for p in probes.values()} == {"metrics"} <= declared
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The proxy binds to localhost, so a probe on it would fail from the kubelet.
    assert all(p["httpGet"]["port"] != "proxy" for p in probes.values())


def test_placement_reaches_the_pod_template(agent_factory: Any) -> None:
    agent = agent_factory(
        nodeSelector={"promethios.ai/node": "real"},
        tolerations=[{"key": "promethios.ai/real-node", "operator": "Exists",
                      "effect": "NoSchedule"}],
    )  # fmt: skip
    pod = build_deployment(agent, SETTINGS, "hash", None)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"promethios.ai/node": "real"}
    assert pod["tolerations"] == [
        {"key": "promethios.ai/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]
    plain = build_deployment(agent_factory(), SETTINGS, "hash", None)["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain
