"""The operator against a real control plane, run as a subprocess (``promethios operator``).

One operator process serves the whole module; each test works in its own namespace,
labelled Pod Security ``restricted`` so every generated pod is also an admission test.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import b64, stop_process, wait_for

from promethios.kube import informer

POLICY = """
apiVersion: governance.promethios.ai/v1alpha1
kind: GovernancePolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  blockedPatterns: {patterns}
"""

AGENT = """
apiVersion: governance.promethios.ai/v1alpha1
kind: GovernedAgent
metadata: {{name: {name}, namespace: {ns}}}
spec:
  image: {image}
  modelProvider: {{type: openai, credentialsSecretRef: {{name: openai-credentials}}}}
  governance: {{policyRef: {{name: {policy}}}}}
"""

WAIT = 30.0


class Operator:
    """A ``promethios operator`` subprocess that can be restarted."""

    def __init__(self, kubeconfig: Path, log_path: Path, system_ns: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        #: Where it keeps the ingest API's TLS Secret (it publishes the CA to every agent).
        self.system_ns = system_ns
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "promethios.cli",
            "operator",
            f"--kubeconfig={self.kubeconfig}",
            "--no-ingest",
            "--liveness-port=0",
            "--resync-seconds=600",
            f"--tls-secret-namespace={self.system_ns}",
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def operator(cluster: Any, crds_installed: list[str], tmp_path_factory: Any) -> Iterator[Operator]:
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    system_ns = f"t-op-system-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", system_ns)
    handle = Operator(Path(cluster.kubeconfig), log_path, system_ns)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        cluster.kubectl("delete", "namespace", "--wait=false", system_ns, check=False)
        if os.environ.get("PROMETHIOS_SHOW_OPERATOR_LOG"):
            print(log_path.read_text())


class Kube:
    """kubectl in one namespace, returning parsed JSON."""

    def __init__(self, cluster: Any, ns: str) -> None:
        self.cluster, self.ns = cluster, ns

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = self.cluster.kubectl("-n", self.ns, *args, input=input, check=check)
        return str(result.stdout)

    def apply(self, manifest: str) -> None:
        self.run("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.run("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.run("get", kind, "-l", selector, "-o", "json"))["items"])

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.run("patch", kind, name, "--type=merge", "-p", json.dumps(patch))

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any]:
        agent = self.get("governedagent", name) or {}
        conditions = (agent.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})


@pytest.fixture
def kube(cluster: Any, namespace: str, operator: Operator) -> Kube:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    k = Kube(cluster, namespace)
    k.run("create", "secret", "generic", "openai-credentials", "--from-literal=apiKey=sk-test")
    return k


def create_policy(kube: Kube, name: str = "policy", patterns: str = "[]") -> None:
    kube.apply(POLICY.format(name=name, ns=kube.ns, patterns=patterns))


def create_agent(
    kube: Kube, name: str = "bot", policy: str = "policy", image: str = "example.com/agent:1"
) -> None:
    kube.apply(AGENT.format(name=name, ns=kube.ns, policy=policy, image=image))


def assert_no_kopf_bookkeeping(kube: Kube, name: str = "bot") -> None:
    """kopf stores nothing on the agents: no diffbase, progress or finalizer annotations."""
    agent = kube.get("ga", name) or {}
    annotations = agent["metadata"].get("annotations") or {}
    assert "promethios.ai/last-handled-configuration" not in annotations
    assert not [k for k in annotations if k.startswith("promethios.ai/") or "kopf" in k]
    assert not [f for f in agent["metadata"].get("finalizers") or [] if "promethios.ai" in f]
    assert "kopf" not in (agent.get("status") or {})


def ready_agent(kube: Kube, name: str = "bot") -> None:
    create_policy(kube)
    create_agent(kube, name)
    kube.run("wait", "--for=condition=Ready", f"governedagent/{name}", "--timeout=60s")


def test_agent_becomes_ready_with_owned_children(kube: Kube) -> None:
    ready_agent(kube)
    agent = kube.get("ga", "bot")
    assert agent is not None
    uid = agent["metadata"]["uid"]
    status = agent["status"]
    assert status["governanceIdentity"] == f"ga-{uid}"
    assert status["observedGeneration"] == agent["metadata"]["generation"]
    assert status["readyReplicas"] == 1
    for kind, name in [
        ("secret", "bot-api-key"),
        ("configmap", "bot-governance"),
        ("deployment", "bot"),
        ("service", "bot"),
    ]:
        child = kube.get(kind, name)
        assert child is not None, kind
        owners = child["metadata"]["ownerReferences"]
        assert [(o["uid"], o["controller"]) for o in owners] == [(uid, True)]
    # The pods were admitted under Pod Security "restricted" and are Ready (kwok).
    pods = kube.items("pods", "app.kubernetes.io/instance=bot")
    assert len(pods) == 1
    assert any(
        c["type"] == "Ready" and c["status"] == "True" for c in pods[0]["status"]["conditions"]
    )
    secret = kube.get("secret", "bot-api-key")
    assert secret is not None and set(secret["data"]) == {"apiKey", "apiKeySha256"}
    # The ingest API's CA bundle travels with the sidecar's config (https URL, caFile).
    config_map = kube.get("configmap", "bot-governance") or {}
    assert config_map["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    config = json.loads(config_map["data"]["config.json"])
    assert config["ingest"]["url"].startswith("https://")
    assert config["ingest"]["caFile"] == "/etc/promethios/ca.crt"
    # kopf's bookkeeping lives in annotations under this project's prefix, not in status.
    assert "kopf" not in status
    annotations = agent["metadata"].get("annotations", {})
    assert not [k for k in annotations if "kopf.zalando.org" in k]
    assert_no_kopf_bookkeeping(kube)
    # The key itself never reaches the status.
    key = base64.b64decode(secret["data"]["apiKey"]).decode()
    assert key not in json.dumps(status)


def test_image_and_policy_changes_roll_out(kube: Kube) -> None:
    ready_agent(kube)
    config_before = (kube.get("configmap", "bot-governance") or {})["data"]["config.json"]
    kube.patch("ga", "bot", {"spec": {"image": "example.com/agent:2"}})
    wait_for(
        lambda: len(kube.items("replicasets", "app.kubernetes.io/instance=bot")) == 2,
        what="a second ReplicaSet after the image change",
    )

    def template_hash() -> str:
        deployment = kube.get("deployment", "bot") or {}
        return str(
            deployment["spec"]["template"]["metadata"]["annotations"]["promethios.ai/config-hash"]
        )

    hash_before = template_hash()
    create_policy(kube, patterns='[{name: secrets, pattern: "password"}]')
    wait_for(lambda: template_hash() != hash_before, what="the pod template's config hash")
    config_after = (kube.get("configmap", "bot-governance") or {})["data"]["config.json"]
    assert config_after != config_before and "password" in config_after
    # The spec change was handled (observedGeneration caught up) without kopf bookkeeping.
    wait_for(
        lambda: (
            (a := kube.get("ga", "bot") or {}).get("status", {}).get("observedGeneration")
            == a["metadata"]["generation"]
        ),
        what="observedGeneration of the image change",
    )
    assert_no_kopf_bookkeeping(kube)


def test_suspend_and_resume(kube: Kube) -> None:
    ready_agent(kube)
    kube.patch("ga", "bot", {"spec": {"suspend": True}})
    wait_for(
        lambda: (kube.get("deployment", "bot") or {})["spec"]["replicas"] == 0, what="replicas 0"
    )
    wait_for(lambda: kube.condition("bot").get("reason") == "Suspended", what="Suspended")
    kube.patch("ga", "bot", {"spec": {"suspend": False}})
    kube.run("wait", "--for=condition=Ready", "governedagent/bot", "--timeout=60s")
    assert (kube.get("deployment", "bot") or {})["spec"]["replicas"] == 1


def test_suspend_after_the_policy_is_deleted_still_scales_to_zero(kube: Kube) -> None:
    """Deleting a reference blocks the workload; it must not also dodge suspend."""
    ready_agent(kube)
    kube.run("delete", "governancepolicy", "policy")
    wait_for(lambda: kube.condition("bot").get("reason") == "PolicyNotFound", what="blocked")
    kube.patch("ga", "bot", {"spec": {"suspend": True}})
    wait_for(
        lambda: (kube.get("deployment", "bot") or {})["spec"]["replicas"] == 0, what="replicas 0"
    )


def test_deleted_child_is_repaired_and_children_follow_the_agent(kube: Kube) -> None:
    ready_agent(kube)
    old_uid = (kube.get("configmap", "bot-governance") or {})["metadata"]["uid"]
    kube.run("delete", "configmap", "bot-governance")
    wait_for(
        lambda: (
            (kube.get("configmap", "bot-governance") or {}).get("metadata", {}).get("uid")
            not in (None, old_uid)
        ),
        what="the ConfigMap to be recreated",
    )
    kube.run("delete", "service", "bot")
    wait_for(lambda: kube.get("service", "bot"), what="the Service to be recreated")
    kube.run("delete", "ga", "bot")
    wait_for(
        lambda: (
            not any(
                kube.get(k, n)
                for k, n in [
                    ("deployment", "bot"),
                    ("secret", "bot-api-key"),
                    ("configmap", "bot-governance"),
                    ("service", "bot"),
                ]
            )
        ),
        timeout=60,
        what="garbage collection of the children",
    )


def test_a_deleted_agents_children_are_not_applied_again(kube: Kube, api_client: Any) -> None:
    """The garbage collection of an agent's children starts reconciles of that agent: they
    must find it gone, not read it back from the operator's own status write (the cache
    answers with one for a minute when the watch no longer holds the object) and apply its
    children anew, owned by a uid that no longer exists."""
    ready_agent(kube)
    since = str(list(informer.list_pages(api_client, "ConfigMap", kube.ns, ""))[-1])
    kube.run("delete", "ga", "bot")
    wait_for(
        lambda: not kube.get("configmap", "bot-governance") and not kube.get("service", "bot"),
        timeout=60,
        what="garbage collection of the children",
    )
    time.sleep(5)  # the reconciles the collection started have run meanwhile
    seen: list[str] = []
    failures: list[Exception] = []
    stopper = informer.Stopper()

    def collect() -> None:
        events = informer.watch_events(api_client, "ConfigMap", kube.ns, "", since, stopper)
        try:
            seen.extend(kind for kind, i in events if i["metadata"]["name"] == "bot-governance")
        except Exception as error:  # the stop cuts the open watch: only a failure before it
            if not stopper.stopped.is_set():
                failures.append(error)

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    time.sleep(3)  # every event since the deletion is replayed by then
    stopper.stop()
    thread.join(10)
    assert failures == []
    assert seen[:1] == ["DELETED"]  # the watch saw the collection
    assert "ADDED" not in seen, seen


def test_key_rotation_keeps_the_previous_hash(kube: Kube) -> None:
    ready_agent(kube)
    before = (kube.get("secret", "bot-api-key") or {})["data"]
    kube.patch("ga", "bot", {"spec": {"apiKey": {"rotation": 1}}})

    def rotated() -> dict[str, Any] | None:
        secret = kube.get("secret", "bot-api-key") or {}
        return secret if "previousApiKeySha256" in secret.get("data", {}) else None

    secret = wait_for(rotated, what="the rotated Secret")
    assert secret["data"]["apiKey"] != before["apiKey"]
    assert secret["data"]["previousApiKeySha256"] == before["apiKeySha256"]
    assert "promethios.ai/previous-key-expires-at" in secret["metadata"]["annotations"]
    status = (kube.get("ga", "bot") or {})["status"]
    assert status["apiKey"]["rotation"] == 1 and status["apiKey"]["previousKeyExpiresAt"]


def test_missing_references_are_reported_then_recovered(kube: Kube) -> None:
    create_agent(kube, policy="late-policy")
    wait_for(
        lambda: kube.condition("bot").get("reason") == "PolicyNotFound",
        what="Ready=False PolicyNotFound",
    )
    assert "late-policy" in kube.condition("bot")["message"]
    events = kube.run("get", "events", "--field-selector", "reason=PolicyNotFound")
    assert "late-policy" in events
    kube.run("delete", "secret", "openai-credentials")
    create_policy(kube, name="late-policy")
    wait_for(
        lambda: kube.condition("bot").get("reason") == "ProviderSecretNotFound",
        timeout=15,
        what="ProviderSecretNotFound once the policy exists",
    )
    kube.run("create", "secret", "generic", "openai-credentials", "--from-literal=apiKey=x")
    wait_for(
        lambda: kube.condition("bot").get("status") == "True",
        timeout=15,
        what="Ready once every reference exists",
    )


def resource_versions(kube: Kube) -> dict[str, str]:
    versions = {}
    for kind, name in [
        ("ga", "bot"),
        ("secret", "bot-api-key"),
        ("configmap", "bot-governance"),
        ("deployment", "bot"),
        ("service", "bot"),
    ]:
        versions[kind] = (kube.get(kind, name) or {})["metadata"]["resourceVersion"]
    return versions


def rollout_settled(kube: Kube, name: str = "bot") -> bool:
    """The Deployment's controller has finished with it (its status stops changing)."""
    deployment = kube.get("deployment", name) or {}
    status = deployment.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    return (
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and conditions.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable"
        and conditions.get("Available", {}).get("status") == "True"
    )


def test_restart_writes_nothing_for_unchanged_agents(kube: Kube, operator: Operator) -> None:
    ready_agent(kube)
    wait_for(lambda: rollout_settled(kube), what="the Deployment's rollout to settle")
    before = resource_versions(kube)
    marker = f"{kube.ns}/bot: in sync at start-up; nothing written"
    operator.restart()
    wait_for(lambda: marker in operator.log_path.read_text(), what="the restarted operator's "
             "reconcile of the agent")  # fmt: skip
    assert resource_versions(kube) == before


def test_quarantine_and_release(kube: Kube) -> None:
    ready_agent(kube)
    key_before = (kube.get("secret", "bot-api-key") or {})["data"]["apiKey"]
    # What the ingest API writes on a breach with onBreach: Quarantine.
    enforcement = {"action": "Quarantined", "breach": 1, "reason": "critical violation"}
    kube.run(
        "patch",
        "ga",
        "bot",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"enforcement": enforcement}}),
    )
    wait_for(lambda: kube.get("networkpolicy", "bot-quarantine"), what="the deny-all policy")

    def sidecar_told() -> bool:
        config = (kube.get("configmap", "bot-governance") or {})["data"]["config.json"]
        return bool(json.loads(config)["quarantined"])

    wait_for(sidecar_told, what="the sidecar's config to say quarantined")
    assert (kube.get("deployment", "bot") or {})["spec"]["replicas"] == 1  # the pods stay
    secret = kube.get("secret", "bot-api-key") or {}
    assert secret["data"]["apiKey"] != key_before
    # The revoked key may only deliver violations, until its grace period ends.
    annotations = secret["metadata"]["annotations"]
    assert annotations["promethios.ai/previous-key-scope"] == "violations"
    assert "promethios.ai/previous-key-expires-at" in annotations
    assert kube.condition("bot")["reason"] == "Quarantined"

    kube.patch("ga", "bot", {"spec": {"governance": {"acknowledgedBreach": 1}}})
    wait_for(
        lambda: kube.get("networkpolicy", "bot-quarantine") is None,
        what="the deny-all policy to be removed",
    )
    kube.run("wait", "--for=condition=Ready", "governedagent/bot", "--timeout=60s")
    status = (kube.get("ga", "bot") or {})["status"]
    assert status["enforcement"]["action"] == "None" and status["enforcement"]["breach"] == 1
    assert (kube.get("deployment", "bot") or {})["spec"]["replicas"] == 1


def test_a_pod_stopped_with_undelivered_violations_is_reported_once(kube: Kube) -> None:
    """The sidecar's termination summary (what the drain could not deliver) becomes one
    Warning Event on the agent, however often the pod's status is seen."""
    ready_agent(kube)
    pod = kube.items("pods", "app.kubernetes.io/instance=bot")[0]
    summary = {"undeliveredViolations": 2, "undeliveredBySeverity": {"critical": 2}}
    terminated = {"terminated": {"exitCode": 0, "reason": "Completed",
                                 "message": json.dumps(summary)}}  # fmt: skip
    statuses = pod["status"].get("initContainerStatuses") or []
    sidecar = next(s for s in statuses if s["name"] == "governance-sidecar")
    sidecar = {**sidecar, "state": terminated, "ready": False, "started": False}
    for attempt in range(2):  # the same pod seen twice (a second status change)
        others = [s for s in statuses if s["name"] != "governance-sidecar"]
        patch = {"status": {"initContainerStatuses": [*others, sidecar],
                            "message": f"seen {attempt}"}}  # fmt: skip
        kube.run("patch", "pod", pod["metadata"]["name"], "--subresource=status",
                 "--type=merge", "-p", json.dumps(patch))  # fmt: skip

    def reported() -> list[dict[str, Any]]:
        events = json.loads(kube.run("get", "events", "-o", "json"))["items"]
        return [e for e in events if e["reason"] == "ViolationsUndelivered"]

    events = wait_for(reported, what="the ViolationsUndelivered Event")
    assert len(events) == 1, events
    assert events[0]["involvedObject"]["name"] == "bot"
    assert "2 undelivered violations (2 critical)" in events[0]["message"]


def test_forged_children_in_another_namespace_touch_nothing_of_the_real_agent(
    kube: Kube, operator: Operator, cluster: Any
) -> None:
    """A namespace user copies an agent's children, labels and names into their own
    namespace (a Secret with data too) and deletes them again: the operator stays up,
    leaves the real agent and the forged objects alone, and logs none of the data."""
    ready_agent(kube)
    before = kube.get("ga", "bot") or {}
    mallory = f"{kube.ns}-m"[:63]
    cluster.kubectl("create", "namespace", mallory)
    forged = Kube(cluster, mallory)
    labels = {
        "app.kubernetes.io/managed-by": "promethios-operator",
        "promethios.ai/agent": "bot",
    }
    stolen = "sk-forged-value-123"
    try:
        for kind, name in [("Secret", "bot-api-key"), ("ConfigMap", "bot-governance")]:
            data = {"apiKey": b64(stolen)} if kind == "Secret" else {"apiKey": stolen}
            manifest = {"apiVersion": "v1", "kind": kind,
                        "metadata": {"name": name, "labels": labels}, "data": data}  # fmt: skip
            forged.apply(json.dumps(manifest))
        forged.run("create", "deployment", "bot", "--image=example.com/x:1")
        forged.run("label", "deployment", "bot", *[f"{k}={v}" for k, v in labels.items()])
        forged.run("create", "service", "clusterip", "bot", "--tcp=80:80")
        forged.run("label", "service", "bot", *[f"{k}={v}" for k, v in labels.items()])
        # A child's name and labels in the agent's own namespace, but not its name.
        kube.run("create", "configmap", "impostor", "--from-literal=x=1")
        kube.run("label", "configmap", "impostor", *[f"{k}={v}" for k, v in labels.items()])
        for kind, name in [("secret", "bot-api-key"), ("configmap", "bot-governance"),
                           ("deployment", "bot"), ("service", "bot")]:  # fmt: skip
            forged.run("delete", kind, name)
        # Proof that the operator saw all of it: an event after them is handled.
        kube.run("delete", "configmap", "bot-governance")
        wait_for(lambda: kube.get("configmap", "bot-governance"), what="the repaired ConfigMap")
        assert operator.process is not None and operator.process.poll() is None
        for kind in ("secret", "configmap", "deployment", "service"):
            assert forged.items(kind, "promethios.ai/agent=bot") == [], kind  # not recreated
        after = kube.get("ga", "bot") or {}
        assert after["status"] == before["status"]
        assert stolen not in operator.log_path.read_text(errors="replace")
        assert b64(stolen) not in operator.log_path.read_text(errors="replace")
    finally:
        cluster.kubectl("delete", "namespace", "--wait=false", mallory, check=False)
