"""Instructions and agents outside the cluster, against a real API server (issue 14).

One ``promethios operator`` (in-process ingest over TLS; ``--external-ingest-url`` names the
same listener as ``localhost``, so the certificate must carry that name too) watches two
namespaces. A fake model provider stands in for OpenAI and Anthropic.

- ``promethios instructions`` prints the agent's real values and never its key; the Python
  snippets it prints (the real ``openai`` and ``anthropic`` SDKs, and the stdlib reporting
  snippet) run unchanged against a real sidecar, started from the operator's ConfigMap, with
  the environment the instructions list (only the sidecar's port differs: the test cannot
  take 15001);
- ``spec.runtime: External`` gets its key, config and status but no Deployment or Service;
  ``promethios package --format compose`` writes the bundle, and a sidecar started from the
  bundle's own config, CA bundle and key file reports into the resource's status over TLS.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    API_VERSION,
    Kube,
    Operator,
    Sidecar,
    Upstream,
    env_table,
    fenced_block,
    promethios,
    request,
    run_python,
    wait_for,
)

from promethios.api.agent import parse_agent
from promethios.api.sidecarconfig import CONFIG_KEY
from promethios.deploy.instructions import snippets

pytestmark = pytest.mark.usefixtures("crds_installed")

PROVIDER_KEY = "sk-deploy-test-provider-credential"
POLICY = "policy"


@dataclass
class Env:
    cluster: Any
    operator: Operator
    upstream: Upstream
    instr: Kube
    external: Kube
    workdir: Path


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: Any) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:6]
    names = {p: f"t-dep-{p}-{suffix}" for p in ("instr", "ext", "system")}
    workdir = tmp_path_factory.mktemp("deploy-integration")
    upstream, operator = Upstream(), None
    try:
        for ns in names.values():
            cluster.kubectl("create", "namespace", ns)
        for purpose in ("instr", "ext"):
            Kube(cluster, names[purpose]).run(
                "create", "secret", "generic", "provider", f"--from-literal=apiKey={PROVIDER_KEY}"
            )
            Kube(cluster, names[purpose]).apply(policy(names[purpose]))
        upstream.start()
        operator = Operator(cluster, [names["instr"], names["ext"]], names["system"], workdir)
        operator.start()
        yield Env(
            cluster,
            operator,
            upstream,
            Kube(cluster, names["instr"]),
            Kube(cluster, names["ext"]),
            workdir,
        )
    finally:
        if operator is not None:
            operator.stop()
        upstream.stop()
        cluster.kubectl("delete", "namespace", "--wait=false", *names.values(), check=False)


def policy(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "GovernancePolicy",
        "metadata": {"name": POLICY, "namespace": ns},
        "spec": {"piiDetection": {"action": "redact"}},
    }


def agent(ns: str, name: str, provider: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "GovernedAgent",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "image": "registry.example/agent:1",
            "replicas": 1,
            "modelProvider": {
                **provider,
                "credentialsSecretRef": {"name": "provider", "key": "apiKey"},
            },
            "governance": {
                "policyRef": {"name": POLICY},
                "trustThreshold": 0.0,
                "heartbeatIntervalSeconds": 1,
            },
            **spec,
        },
    }


def sidecar_from_config_map(env: Env, kube: Kube, name: str, workdir: Path) -> Sidecar:
    """A sidecar wired from the operator's ConfigMap and Secrets, as the pod mounts them."""
    data = (kube.get("configmap", f"{name}-governance") or {})["data"]
    workdir.mkdir()
    files = {
        "api_key": workdir / "api-key",
        "credential": workdir / "credential",
        "ca": workdir / "ca.crt",
        "spool": workdir / "spool",
    }
    files["spool"].mkdir()
    files["ca"].write_text(data["ca.crt"])
    files["api_key"].write_text(kube.secret(f"{name}-api-key", "apiKey"))
    files["credential"].write_text(PROVIDER_KEY)
    sidecar = Sidecar(json.loads(data[CONFIG_KEY]), files, workdir)
    sidecar.start()
    return sidecar


def snippet_env(instructions: str, sidecar: Sidecar) -> dict[str, str]:
    """The environment the instructions list, with the pod's sidecar port (15001) replaced
    by this test sidecar's."""
    rows = env_table(instructions)
    assert rows, "the instructions list no environment"
    return {k: v.replace(":15001", f":{sidecar.proxy_port}") for k, v in rows.items()}


def test_instructions_run_against_a_real_sidecar(env: Env) -> None:
    kube, ns = env.instr, env.instr.ns
    kube.apply(
        agent(ns, "bot", {"type": "custom", "baseUrl": f"{env.upstream.root}/v1"}),
        agent(ns, "claude", {"type": "anthropic", "baseUrl": env.upstream.root}),
    )
    kube.wait_ready("bot")
    kube.wait_ready("claude")
    printed = promethios(env.cluster, "instructions", f"{ns}/bot")
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    api_key = kube.secret("bot-api-key", "apiKey")
    assert api_key not in text and PROVIDER_KEY not in text
    body = kube.get("governedagent", "bot")
    assert body is not None
    parsed = parse_agent(body)
    assert f"`PROMETHIOS_GOVERNANCE_ID` | `{parsed.governance_identity}`" in text
    code = fenced_block(text, "### Python (OpenAI SDK)", "python")
    assert code == snippets(parsed)["openai-python"]

    sidecar = sidecar_from_config_map(env, kube, "bot", env.workdir / "bot")
    try:
        ran = run_python(code, snippet_env(text, sidecar), env.workdir / "bot")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == f"You said: Hello from {ns}/bot"
        # The SDK sent the placeholder; the provider saw the credential only the sidecar holds.
        assert env.upstream.log.credentials[-1] == f"Bearer {PROVIDER_KEY}"

        report = fenced_block(text, "## 2. Report your own violations and metrics", "python")
        ran = run_python(report, snippet_env(text, sidecar), env.workdir / "bot")
        assert ran.returncode == 0, ran.stderr

        def reported() -> bool:
            recent = (kube.status("bot").get("governance") or {}).get("recentViolations") or []
            return any(v["type"] == "app.refund-over-limit" for v in recent)

        wait_for(reported, "the snippet's violation in the agent's status", check=sidecar.check)
    finally:
        sidecar.stop()

    claude_text = promethios(env.cluster, "instructions", f"{ns}/claude").stdout
    claude_code = fenced_block(claude_text, "### Python (Anthropic SDK)", "python")
    sidecar = sidecar_from_config_map(env, kube, "claude", env.workdir / "claude")
    try:
        ran = run_python(claude_code, snippet_env(claude_text, sidecar), env.workdir / "claude")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == f"You said: Hello from {ns}/claude"
        assert env.upstream.log.paths[-1] == "/v1/messages"
    finally:
        sidecar.stop()


def test_instructions_name_a_missing_agent(env: Env) -> None:
    result = promethios(env.cluster, "instructions", f"{env.instr.ns}/nobody")
    assert result.returncode == 1
    assert f"GovernedAgent {env.instr.ns}/nobody not found" in result.stderr


def test_an_external_agent_gets_key_config_and_status_but_no_workload(env: Env) -> None:
    kube, ns = env.external, env.external.ns
    kube.apply(agent(ns, "edge", {"type": "custom", "baseUrl": f"{env.upstream.root}/v1"},
                     runtime="External"))  # fmt: skip
    kube.wait_ready("edge")
    ready = kube.condition("edge", "Ready")
    assert ready["reason"] == "ExternalRuntime"
    assert kube.get("deployment", "edge") is None and kube.get("service", "edge") is None
    assert kube.status("edge")["children"] == {
        "secret": "edge-api-key",
        "configMap": "edge-governance",
    }
    config = json.loads((kube.get("configmap", "edge-governance") or {})["data"][CONFIG_KEY])
    assert config["ingest"]["url"] == env.operator.external_url

    out = env.workdir / "edge-compose"
    result = promethios(env.cluster, "package", "--format", "compose", f"{ns}/edge",
                        "--with-key", "--output", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert compose["services"]["agent"]["network_mode"] == "service:governance-sidecar"
    bundle_config = json.loads((out / "config/config.json").read_text())
    assert bundle_config["ingest"]["url"] == env.operator.external_url
    assert (out / "secrets/promethios-api-key").read_text() == kube.secret("edge-api-key", "apiKey")
    (out / "secrets/provider-credential").write_text(PROVIDER_KEY)

    # The sidecar from the bundle: its config, its CA bundle, its key file; only the
    # container paths and the listener ports are this machine's.
    files = {
        "api_key": out / "secrets/promethios-api-key",
        "credential": out / "secrets/provider-credential",
        "ca": out / "config/ca.crt",
        "spool": env.workdir / "edge-spool",
    }
    files["spool"].mkdir()
    sidecar = Sidecar(bundle_config, files, env.workdir)
    sidecar.start()
    try:
        wait_for(
            lambda: kube.condition("edge", "HeartbeatFresh").get("status") == "True",
            "the External agent's heartbeat in its status",
            check=sidecar.check,
        )
        assert (kube.status("edge").get("heartbeat") or {}).get("state") == "active"
        found = {"type": "edge.custom", "severity": "low", "description": "from the agent"}
        violation = {"agentId": f"{ns}/edge", "violation": found}
        status, _ = request("POST", f"{sidecar.url}/api/v1/governance/violations", violation)
        assert status == 202
        wait_for(
            lambda: any(
                v["type"] == "edge.custom"
                for v in (kube.status("edge").get("governance") or {}).get("recentViolations") or []
            ),
            "the External agent's violation in its status",
            check=sidecar.check,
        )
    finally:
        sidecar.stop()


def test_a_pod_agent_is_not_packaged_for_compose(env: Env) -> None:
    env.instr.apply(agent(env.instr.ns, "inside", {"type": "openai"}))
    result = promethios(env.cluster, "package", "--format", "compose", f"{env.instr.ns}/inside",
                        "--output", str(env.workdir / "nope"))  # fmt: skip
    assert result.returncode == 1 and "set spec.runtime: External" in result.stderr


def test_rollback_on_breach_is_refused_for_an_external_agent(env: Env) -> None:
    ns = env.external.ns
    manifest = agent(ns, "edge2", {"type": "openai"}, runtime="External",
                     rollout={"rollbackOnBreach": True})  # fmt: skip
    result = env.external.run("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0
    assert "rollout.rollbackOnBreach needs runtime Pod" in result.stderr
