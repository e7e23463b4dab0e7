"""``promethios package``: the kustomize bundle and the Compose bundle, as files (pure)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from promethios.api.agent import parse_agent
from promethios.api.rollout import Runtime
from promethios.builders.workload import agent_env
from promethios.deploy import compose, kustomize
from promethios.deploy.output import write


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_bundle_has_a_base_and_two_overlays() -> None:
    files = kustomize.files(kustomize.new_bundle("support-bot", "team-a", "reg.example/bot:1"))
    assert set(files) >= {
        "README.md",
        "INTEGRATION.md",
        ".gitignore",
        "base/kustomization.yaml",
        "base/governedagent.yaml",
        "base/governancepolicy.yaml",
        "base/alertsink.yaml",
        "base/secrets.example.yaml",
        "overlays/dev/kustomization.yaml",
        "overlays/prod/kustomization.yaml",
    }
    base = yaml.safe_load(files["base/kustomization.yaml"])
    assert "secrets.example.yaml" not in base["resources"]  # the user fills it, out of git
    (agent,) = documents(files["base/governedagent.yaml"])
    ref = agent["spec"]["modelProvider"]["credentialsSecretRef"]
    secrets = {d["metadata"]["name"]: d for d in documents(files["base/secrets.example.yaml"])}
    assert secrets[ref["name"]]["stringData"] == {ref["key"]: "REPLACE_ME"}
    assert "*.secret.yaml" in files[".gitignore"]


def test_dev_audits_and_prod_enforces_with_quarantine_and_rollback() -> None:
    files = kustomize.files(kustomize.new_bundle("support-bot", "team-a", "reg.example/bot:1"))
    dev = yaml.safe_load(files["overlays/dev/kustomization.yaml"])
    prod = yaml.safe_load(files["overlays/prod/kustomization.yaml"])
    assert (dev["namespace"], prod["namespace"]) == ("team-a-dev", "team-a-prod")
    (dev_agent,) = documents(files["overlays/dev/governedagent-patch.yaml"])
    (prod_agent,) = documents(files["overlays/prod/governedagent-patch.yaml"])
    assert dev_agent["spec"]["governance"]["mode"] == "audit"
    assert prod_agent["spec"]["governance"] == {
        "mode": "enforce",
        "onBreach": "Quarantine",
        "trustThreshold": 0.8,
    }
    assert prod_agent["spec"]["rollout"]["rollbackOnBreach"] is True
    (dev_policy,) = documents(files["overlays/dev/governancepolicy-patch.yaml"])
    (prod_policy,) = documents(files["overlays/prod/governancepolicy-patch.yaml"])
    assert dev_policy["spec"]["budget"]["tokens"] > 10 * prod_policy["spec"]["budget"]["tokens"]
    readme = files["README.md"]
    assert "kubectl apply -k overlays/dev" in readme and "kubectl apply -k overlays/prod" in readme
    assert "wait --for=condition=Ready governedagent/support-bot" in readme


def test_an_external_agent_has_no_replicas_or_rollback_in_its_overlays() -> None:
    bundle = kustomize.new_bundle("edge", "ops", "reg.example/edge:1", runtime=Runtime.EXTERNAL)
    files = kustomize.files(bundle)
    (base,) = documents(files["base/governedagent.yaml"])
    (prod,) = documents(files["overlays/prod/governedagent-patch.yaml"])
    assert base["spec"]["runtime"] == "External"
    assert "rollout" not in prod["spec"] and "replicas" not in prod["spec"]


def test_an_invalid_bundle_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="--base-url is required for provider custom"):
        kustomize.new_bundle("bot", "ns", "img", provider="custom")
    with pytest.raises(pydantic.ValidationError, match="port"):
        kustomize.new_bundle("bot", "ns", "img", port=15001)


def test_a_live_agent_is_packaged_without_its_cluster_state() -> None:
    body = {
        "metadata": {"name": "bot", "namespace": "team-a", "uid": "u"},
        "spec": {
            "image": "reg.example/bot:7",
            "modelProvider": {"type": "openai", "credentialsSecretRef": {"name": "k", "key": "t"}},
            "governance": {"policyRef": {"name": "p"}, "acknowledgedBreach": 4},
            "apiKey": {"rotation": 3},
            "alertSinks": [{"name": "pager"}],
        },
        "status": {"governanceIdentity": "ga-u"},
    }
    sink = {"type": "pagerduty", "routingKeySecretRef": {"name": "pd", "key": "routingKey"}}
    bundle = kustomize.bundle_from_cluster(body, {"allowedModels": ["gpt-4o"]}, {"pager": sink})
    files = kustomize.files(bundle)
    (agent,) = documents(files["base/governedagent.yaml"])
    assert "apiKey" not in agent["spec"] and "acknowledgedBreach" not in agent["spec"]["governance"]
    assert agent["spec"]["image"] == "reg.example/bot:7"
    names = {d["metadata"]["name"] for d in documents(files["base/secrets.example.yaml"])}
    assert names == {"k", "pd"}
    assert yaml.safe_load(files["overlays/dev/kustomization.yaml"])["namespace"] == "team-a-dev"


# -- Compose --------------------------------------------------------------------------------

CONFIG = {
    "agentId": "ops/edge",
    "governanceIdentity": "ga-u",
    "policyName": "p",
    "provider": {"type": "openai", "baseUrl": "https://api.openai.com/v1",
                 "credentialFile": "/var/run/promethios/provider/credential"},
    "ingest": {"url": "https://ingest.example.com",
               "apiKeyFile": "/var/run/promethios/api-key/apiKey",
               "caFile": "/etc/promethios/ca.crt"},
    "spoolDir": "/var/lib/promethios/spool",
}  # fmt: skip


def external_agent() -> Any:
    return parse_agent(
        {
            "metadata": {"name": "edge", "namespace": "ops", "uid": "u"},
            "spec": {
                "image": "reg.example/edge:1",
                "runtime": "External",
                "port": 9000,
                "env": [{"name": "MODE", "value": "fast"}],
                "modelProvider": {"type": "openai", "credentialsSecretRef": {"name": "k"}},
                "governance": {"policyRef": {"name": "p"}},
            },
        }
    )


def test_the_compose_config_is_the_operators_with_only_secret_paths_changed() -> None:
    inputs = compose.ComposeInputs(external_agent(), json.dumps(CONFIG), "CA PEM")
    files = compose.files(inputs)
    config = json.loads(files["config/config.json"])
    changed = {k for k in CONFIG if config[k] != CONFIG[k]}
    assert changed == {"provider", "ingest"}
    assert config["ingest"] == {**CONFIG["ingest"], "apiKeyFile": "/run/secrets/promethios-api-key"}
    assert config["provider"]["credentialFile"] == "/run/secrets/provider-credential"
    assert files["config/ca.crt"] == "CA PEM"
    assert "secrets/promethios-api-key" not in files  # only with --with-key


def test_the_agent_shares_the_sidecars_network_namespace_and_gets_the_pods_env() -> None:
    agent = external_agent()
    compose_file = yaml.safe_load(
        compose.files(compose.ComposeInputs(agent, json.dumps(CONFIG), "CA"))["compose.yaml"]
    )
    sidecar, app = compose_file["services"]["governance-sidecar"], compose_file["services"]["agent"]
    assert app["network_mode"] == "service:governance-sidecar"
    assert app["depends_on"] == {"governance-sidecar": {"condition": "service_healthy"}}
    assert app["environment"] == {e["name"]: e["value"] for e in agent_env(agent)}
    assert app["environment"]["MODE"] == "fast"
    assert "9000:9000" in sidecar["ports"]
    assert sidecar["command"] == ["sidecar", "--config", "/etc/promethios/config.json"]
    assert sidecar["user"] == "65532:65532" and sidecar["read_only"] is True
    assert set(compose_file["secrets"]) == {"promethios-api-key", "provider-credential"}
    assert "environment" not in sidecar  # the key and credential are files, never env
    # The spool survives restarts in a directory the sidecar's uid can own (not root's volume).
    assert "./spool:/var/lib/promethios/spool" in sidecar["volumes"]


def test_a_config_that_needs_a_ca_bundle_without_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"caFile"):
        compose.files(compose.ComposeInputs(external_agent(), json.dumps(CONFIG), None))


def test_the_key_file_is_private_and_git_ignored(tmp_path: Path) -> None:
    inputs = compose.ComposeInputs(external_agent(), json.dumps(CONFIG), "CA", api_key="k-123")
    files = compose.files(inputs)
    write(tmp_path, files, private=compose.SECRET_FILES)
    key = tmp_path / "secrets/promethios-api-key"
    assert key.read_text() == "k-123"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "*" in files["secrets/.gitignore"].splitlines()
    with pytest.raises(FileExistsError, match="--force"):
        write(tmp_path, files)
