"""Packages, environments and rollback, against a real API server (issue 14).

One ``promethios operator`` watches three namespaces: the ``dev`` and ``prod`` of a bundle
``promethios package`` writes, and one for rollbacks.

- each overlay, rendered by the testenv's ``kubectl kustomize``, passes a server-side dry
  run against the CRDs (and a broken one does not); applied for real, with the Secrets the
  README says to create, the agent becomes Ready in both environments, audited in dev and
  enforced with quarantine in prod: the README's "Deploy an agent" walk;
- the operator records revisions (status and ControllerRevisions); ``kubectl rollout undo``
  on the agent's Deployment is reverted as drift; ``promethios rollback`` restores the
  previous revision's spec; with ``rollbackOnBreach`` a new revision that breaches inside
  its window is rolled back by the operator without touching the spec, until the spec
  changes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import API_VERSION, Kube, Operator, promethios, request, wait_for

pytestmark = pytest.mark.usefixtures("crds_installed")

AGENT = "support-bot"


@dataclass
class Env:
    cluster: Any
    operator: Operator
    prefix: str
    rollback: Kube
    workdir: Path

    def kube(self, environment: str) -> Kube:
        return Kube(self.cluster, f"{self.prefix}-{environment}")


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: Any) -> Iterator[Env]:
    prefix = f"t-pkg-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-dev", f"{prefix}-prod", f"{prefix}-rb", f"{prefix}-system"]
    workdir = tmp_path_factory.mktemp("deploy-rollout")
    operator = None
    try:
        for ns in names:
            cluster.kubectl("create", "namespace", ns)
        operator = Operator(cluster, names[:3], names[3], workdir)
        operator.start()
        yield Env(cluster, operator, prefix, Kube(cluster, names[2]), workdir)
    finally:
        if operator is not None:
            operator.stop()
        cluster.kubectl("delete", "namespace", "--wait=false", *names, check=False)


@pytest.fixture(scope="module")
def bundle(env: Env) -> Path:
    out = env.workdir / AGENT
    result = promethios(
        env.cluster, "package", AGENT, "--namespace", env.prefix,
        "--image", "registry.example/support-bot:1.0", "--provider", "custom",
        "--base-url", "http://127.0.0.1:9/v1", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def kustomize(env: Env, overlay: Path) -> str:
    return str(env.cluster.kubectl("kustomize", str(overlay)).stdout)


def test_every_overlay_passes_a_server_side_dry_run(env: Env, bundle: Path) -> None:
    for environment in ("dev", "prod"):
        rendered = kustomize(env, bundle / "overlays" / environment)
        kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered))
        assert kinds == ["AlertSink", "GovernancePolicy", "GovernedAgent"]
        result = env.cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=rendered, check=False
        )
        assert result.returncode == 0, result.stderr
        assert f"governedagent.governance.promethios.ai/{AGENT} created (server dry run)" in (
            result.stdout
        )
    # The dry run is the API server's validation, not a formality: a bad value is refused.
    broken = kustomize(env, bundle / "overlays/prod").replace("onBreach: Quarantine", "onBreach: X")
    result = env.cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=broken, check=False)
    assert result.returncode != 0 and "spec.governance.onBreach" in result.stderr


def test_the_readme_walk_reaches_ready_in_dev_and_prod(env: Env, bundle: Path) -> None:
    readme = (bundle / "README.md").read_text()
    for environment in ("dev", "prod"):
        kube = env.kube(environment)
        # The README's commands, with values for the Secrets it says to fill.
        assert f"kubectl create namespace {kube.ns}" in readme
        for line in readme.splitlines():
            if line.startswith(f"kubectl -n {kube.ns} create secret generic"):
                command = line.split("#")[0].split()[3:]
                value = "https://alerts.example.com/hook" if "url=" in line else "sk-test"
                env.cluster.kubectl("-n", kube.ns, *[a.replace("'...'", value) for a in command])
        assert f"kubectl apply -k overlays/{environment}" in readme
        env.cluster.kubectl("apply", "-k", str(bundle / "overlays" / environment))
    for environment in ("dev", "prod"):
        env.kube(environment).wait_ready(AGENT)
    dev, prod = (env.kube(e).get("governedagent", AGENT) or {} for e in ("dev", "prod"))
    assert dev["spec"]["governance"]["mode"] == "audit"
    assert prod["spec"]["governance"]["onBreach"] == "Quarantine"
    assert prod["spec"]["rollout"]["rollbackOnBreach"] is True
    maps = [env.kube(e).get("configmap", f"{AGENT}-governance") or {} for e in ("dev", "prod")]
    configs = [yaml.safe_load(m["data"]["config.json"]) for m in maps]
    assert configs[0]["mode"] == "audit" and configs[1]["mode"] == "enforce"
    assert configs[0]["policy"]["budget"]["tokens"] > configs[1]["policy"]["budget"]["tokens"]
    assert (env.kube("prod").get("deployment", AGENT) or {})["spec"]["replicas"] == 2


def test_a_live_agent_is_packaged_from_the_cluster(env: Env, bundle: Path) -> None:
    kube = env.kube("prod")
    env.cluster.kubectl("apply", "-k", str(bundle / "overlays/prod"))
    kube.patch("governedagent", AGENT, {"spec": {"governance": {"acknowledgedBreach": 0}}})
    out = env.workdir / "exported"
    result = promethios(env.cluster, "package", f"{kube.ns}/{AGENT}", "--from-cluster",
                        "--output", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rendered = kustomize(env, out / "base")
    live = kube.get("governedagent", AGENT) or {}
    exported = next(d for d in yaml.safe_load_all(rendered) if d["kind"] == "GovernedAgent")
    assert exported["spec"]["image"] == live["spec"]["image"]
    assert "acknowledgedBreach" not in exported["spec"]["governance"]  # per-cluster state
    checked = env.cluster.kubectl(
        "-n", kube.ns, "apply", "--dry-run=server", "-f", "-", input=rendered, check=False
    )
    assert checked.returncode == 0, checked.stderr


# -- rollback -------------------------------------------------------------------------------


def rollback_agent(ns: str, image: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "GovernancePolicy",
            "metadata": {"name": "policy", "namespace": ns},
            "spec": {},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "GovernedAgent",
            "metadata": {"name": "bot", "namespace": ns},
            "spec": {
                "image": image,
                "replicas": 1,
                "modelProvider": {"type": "openai"},
                "governance": {"policyRef": {"name": "policy"}, "trustThreshold": 0.0},
                "rollout": {"rollbackOnBreach": True, "rollbackWindowSeconds": 600},
            },
        },
    ]


def revision(kube: Kube) -> int | None:
    return (kube.status("bot").get("rollout") or {}).get("revision")


def set_image(kube: Kube, image: str, expected_revision: int) -> None:
    kube.patch("governedagent", "bot", {"spec": {"image": image}})
    wait_for(lambda: revision(kube) == expected_revision, f"revision {expected_revision}")
    wait_for(lambda: kube.deployment_image("bot") == image, f"the Deployment to run {image}")


def critical_violation(env: Env, kube: Kube) -> int:
    """A critical violation reported straight to the ingest API with the agent's key."""
    status = kube.status("bot")
    agent_id = f"{kube.ns}/bot"
    headers = {
        "Authorization": f"Bearer {kube.secret('bot-api-key', 'apiKey')}",
        "X-Agent-ID": agent_id,
        "X-Governance-ID": status["governanceIdentity"],
    }
    body = {
        "agentId": agent_id,
        "violation": {"type": "test.critical", "severity": "critical", "description": "t",
                      "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }  # fmt: skip
    url = f"{env.operator.ingest_url}/api/v1/governance/violations"
    return request("POST", url, body, headers, env.operator.ca_file)[0]


def test_revisions_undo_and_rollbacks(env: Env) -> None:
    kube = env.rollback
    kube.apply(*rollback_agent(kube.ns, "registry.example/bot:1"))
    kube.wait_ready("bot")
    wait_for(lambda: revision(kube) == 1, "revision 1")
    first = kube.status("bot")["revisions"][0]
    # Revision 1 rides on its Deployment until revision 2 supersedes it.
    assert kube.get("controllerrevision", f"bot-{first['hash']}") is None

    set_image(kube, "registry.example/bot:2", 2)
    kube.wait_ready("bot")
    stored = kube.get("controllerrevision", f"bot-{first['hash']}")
    assert stored is not None and stored["revision"] == 1
    assert stored["data"]["spec"]["image"] == "registry.example/bot:1"
    assert stored["metadata"]["ownerReferences"][0]["name"] == "bot"

    # `kubectl rollout undo` changes the operator's child: the operator puts it back.
    generation = (kube.get("deployment", "bot") or {})["metadata"]["generation"]
    undone = kube.run("rollout", "undo", "deployment/bot")
    assert "rolled back" in undone.stdout

    def reverted() -> bool:
        deployment = kube.get("deployment", "bot") or {}
        moved = deployment["metadata"]["generation"] >= generation + 2  # undo, then the repair
        return moved and kube.deployment_image("bot") == "registry.example/bot:2"

    wait_for(reverted, "the operator to revert the undo")

    listed = promethios(env.cluster, "rollback", f"{kube.ns}/bot", "--list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["2", "1"] and rows[0][-1] == "running"

    rolled = promethios(env.cluster, "rollback", f"{kube.ns}/bot")
    assert rolled.returncode == 0, rolled.stderr
    assert "restored revision 1's spec (image registry.example/bot:1" in rolled.stdout
    manifest = yaml.safe_load(rolled.stdout.split("next sync puts the newer one back:")[1])
    assert manifest["spec"]["image"] == "registry.example/bot:1"
    shown = kube.run("get", "governedagent", "bot", "-o", "json", "--show-managed-fields")
    restored = json.loads(shown.stdout)
    assert restored["spec"]["image"] == "registry.example/bot:1"
    managers = {m["manager"] for m in restored["metadata"]["managedFields"]}
    assert "promethios-rollback" in managers  # who changed the spec, for the audit trail
    wait_for(lambda: revision(kube) == 3, "revision 3 (revision 1 restored)")
    assert kube.status("bot")["revisions"][0]["restoredFrom"] == 1
    wait_for(lambda: kube.deployment_image("bot") == "registry.example/bot:1", "image 1 again")

    # A new revision that breaches inside its window runs the one before it instead.
    set_image(kube, "registry.example/bot:3", 4)
    assert critical_violation(env, kube) == 200  # recorded (the API server has it)
    wait_for(
        lambda: kube.deployment_image("bot") == "registry.example/bot:1",
        "the operator to roll revision 4 back",
    )
    assert (kube.get("governedagent", "bot") or {})["spec"]["image"] == "registry.example/bot:3"
    pinned = kube.status("bot")["rollout"]
    assert (pinned["revision"], pinned["rolledBack"]["fromRevision"]) == (5, 4)
    wait_for(
        lambda: kube.condition("bot", "Degraded").get("reason") == "RolledBack",
        "Degraded: RolledBack",
    )
    events = kube.run(
        "get", "events", "--field-selector=involvedObject.name=bot,reason=RolledBack", "-o", "name"
    )
    assert events.stdout.strip(), "no RolledBack Event"

    # Any change to the spec ends the rollback.
    set_image(kube, "registry.example/bot:4", 6)
    wait_for(lambda: kube.condition("bot", "Degraded").get("status") == "False", "Degraded cleared")
    assert "rolledBack" not in kube.status("bot")["rollout"]
