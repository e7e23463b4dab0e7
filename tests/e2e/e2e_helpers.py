"""Helpers for the real-pod end-to-end tests (not a test module, not a conftest).

Polling with deadlines, kubectl with JSON, helm with its state in a temporary directory,
the manifests the tests apply, and the figures the run reports at the end. Test modules
import it as ``e2e_helpers`` (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_platform import Platform

from promethios_local.localcluster.realnode import default_archive_dir

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promethios-operator"
OPERATOR_IMAGE = "ghcr.io/promethios/promethios-operator:0.1.0"
E2E_IMAGE = "localhost/promethios/e2e:1"
GROUP = "governance.promethios.ai"
API = f"{GROUP}/v1alpha1"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
ARCHIVES = ("promethios-operator.tar", "promethios-e2e.tar")
OPERATOR_NAMESPACE = "promethios-system"
RELEASE = "promethios-operator"
#: Figures the run reports in its terminal summary (``conftest.pytest_terminal_summary``).
FIGURES: dict[str, str] = {}


def image_archives() -> list[Path]:
    """The archives ``make e2e-images`` writes; fails (not skips) when one is missing."""
    archives = [default_archive_dir() / name for name in ARCHIVES]
    missing = [str(a) for a in archives if not a.is_file()]
    if missing:
        pytest.fail(f"image archives missing: {missing}; run `make e2e-images`", pytrace=False)
    return archives


def record(name: str, value: str) -> None:
    FIGURES[name] = value


def wait_for(
    predicate: Callable[[], Any], what: object, timeout: float = 60.0, interval: float = 0.5
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Kube:
    """kubectl against the real-node cluster, with JSON in and out."""

    cluster: Platform

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        result = self.cluster.kubectl(*args, input=input, check=False, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def apply(self, *objects: dict[str, Any]) -> None:
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.run("apply", "--server-side", "--field-manager=e2e", "-f", "-",
                 input=json.dumps(document))  # fmt: skip

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        result = self.run(*args, check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            pytest.fail(f"kubectl get {kind} {name}: {result.stderr}")
        return dict(json.loads(result.stdout))

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.run(*args).stdout)["items"])

    def exec(
        self, namespace: str, pod: str, container: str, *command: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-n", namespace, pod, "-c", container, "--", *command,
                        check=False, timeout=timeout)  # fmt: skip

    def exec_json(self, namespace: str, pod: str, container: str, *command: str) -> Any:
        result = self.exec(namespace, pod, container, *command)
        if result.returncode != 0:
            pytest.fail(f"exec {' '.join(command)} in {pod}/{container}: {result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def namespace(self, name: str, *, steer: bool = True, restricted: bool = True) -> str:
        """A namespace whose pods all land on the real node (and meet ``restricted``)."""
        metadata: dict[str, Any] = {"name": name, "labels": {"promethios.ai/test": "e2e"}}
        if restricted:
            metadata["labels"].update(RESTRICTED)
        if steer and self.cluster.namespace_annotations:
            metadata["annotations"] = dict(self.cluster.namespace_annotations)
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
        return name


@dataclass
class Helm:
    """helm (built by ``make testenv``) bound to the cluster, state in a temp directory."""

    path: Path
    kubeconfig: Path
    home: Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 300.0) -> str:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        argv = [str(self.path), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=env,
                                timeout=timeout, check=False)  # fmt: skip
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr


def restricted_container(name: str, command: list[str], port: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": E2E_IMAGE,
        "imagePullPolicy": "Never",
        "command": command,
        "env": [{"name": "PORT", "value": str(port)}],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def fake_provider(namespace: str) -> list[dict[str, Any]]:
    """The fake model provider as a pod and its Service ``fake-provider:8080``."""
    labels = {"app": "fake-provider"}
    command = ["python", "/opt/e2e/fake_provider.py"]
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "fake-provider", "namespace": namespace, "labels": labels},
            "spec": {"containers": [restricted_container("provider", command, 8080)]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "fake-provider", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080}]},
        },
    ]


def policy(namespace: str, name: str = "e2e", pii_severity: str = "medium") -> dict[str, Any]:
    """PII is redacted and reported; the phrase EXFILTRATE-NOW is blocked as critical."""
    return {
        "apiVersion": API,
        "kind": "GovernancePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "blockedPatterns": [
                {
                    "name": "exfiltrate",
                    "pattern": "EXFILTRATE-NOW",
                    "severity": "critical",
                    "appliesTo": "request",
                },
            ],
            "piiDetection": {"enabled": True, "action": "redact", "severity": pii_severity},
        },
    }


def credential_secret(namespace: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "provider-credential", "namespace": namespace},
        "stringData": {"apiKey": value},
    }


def governed_agent(
    namespace: str, name: str, on_breach: str = "Alert", heartbeat_seconds: int = 3
) -> dict[str, Any]:
    """The test agent behind its sidecar, calling the fake provider through the proxy."""
    return {
        "apiVersion": API,
        "kind": "GovernedAgent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": E2E_IMAGE,
            "imagePullPolicy": "Never",
            "port": 8080,
            "env": [{"name": "PORT", "value": "8080"}],
            "modelProvider": {
                "type": "openai",
                "baseUrl": f"http://fake-provider.{namespace}.svc:8080/v1",
                "credentialsSecretRef": {"name": "provider-credential", "key": "apiKey"},
            },
            "governance": {
                "policyRef": {"name": "e2e"},
                "mode": "enforce",
                "heartbeatIntervalSeconds": heartbeat_seconds,
                "onBreach": on_breach,
            },
        },
    }


def agent_pods(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The agent's pods that are not being deleted."""
    pods = kube.items("pods", namespace, f"app.kubernetes.io/instance={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


class Lazy:
    """A message computed only when shown (e.g. the state at the moment a wait failed)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render

    def __str__(self) -> str:
        return self.render()


class PodStates:
    """Renders pods' phase and container states lazily (for failure messages)."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods

    def __str__(self) -> str:
        parts = []
        for pod in self.pods:
            status = pod.get("status", {})
            containers = (status.get("initContainerStatuses") or []) + (
                status.get("containerStatuses") or []
            )
            states = {c["name"]: (list(c["state"]), c.get("ready")) for c in containers}
            parts.append(f"{pod['metadata']['name']} {status.get('phase')} {states}")
        return "; ".join(parts) or "none"


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@dataclass
class AgentEnv:
    """One test namespace: a fake provider, a provider credential, the ``e2e`` policy and
    a GovernedAgent, all on the real node. ``first_heartbeat_seconds`` is apply -> the
    first heartbeat seen in the resource's status."""

    kube: Kube
    namespace: str
    name: str
    credential: str
    first_heartbeat_seconds: float = 0.0

    @classmethod
    def create(cls, kube: Kube, prefix: str, name: str, on_breach: str = "Alert") -> AgentEnv:
        namespace = kube.namespace(f"e2e-{prefix}-{uuid.uuid4().hex[:6]}")
        env = cls(kube, namespace, name, f"sk-e2e-{uuid.uuid4().hex}")
        kube.apply(credential_secret(namespace, env.credential), *fake_provider(namespace),
                   policy(namespace))  # fmt: skip
        wait_for(lambda: pod_ready(kube.get("pod", "fake-provider", namespace) or {}),
                 "the fake provider pod to be Ready", timeout=120)  # fmt: skip
        began = time.monotonic()
        kube.apply(governed_agent(namespace, name, on_breach))
        wait_for(lambda: env.heartbeat().get("lastHeartbeat"),
                 f"the first heartbeat of {namespace}/{name}", timeout=180)  # fmt: skip
        env.first_heartbeat_seconds = time.monotonic() - began
        return env

    def resource(self) -> dict[str, Any]:
        found = self.kube.get("governedagent", self.name, self.namespace)
        assert found is not None, f"GovernedAgent {self.namespace}/{self.name} is gone"
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.resource().get("status") or {})

    def heartbeat(self) -> dict[str, Any]:
        return dict(self.status().get("heartbeat") or {})

    def governance(self) -> dict[str, Any]:
        return dict(self.status().get("governance") or {})

    def violations_total(self) -> int:
        return int((self.governance().get("violations") or {}).get("total", 0))

    def pod(self, ready: bool = True) -> dict[str, Any]:
        """The agent's pod: a Ready one, or with ``ready=False`` any whose agent container
        runs (a quarantined sidecar, its key revoked, fails its readiness probe)."""

        def running(pod: dict[str, Any]) -> bool:
            statuses = pod.get("status", {}).get("containerStatuses") or []
            return any(s["name"] == "agent" and "running" in s["state"] for s in statuses)

        usable = pod_ready if ready else running
        seen: list[dict[str, Any]] = []

        def usable_pods() -> list[dict[str, Any]]:
            seen[:] = agent_pods(self.kube, self.namespace, self.name)
            return [p for p in seen if usable(p)]

        pods = wait_for(
            usable_pods,
            f"a {'Ready' if ready else 'running'} pod of {self.name} (pods: {PodStates(seen)})",
            timeout=120,
        )
        return dict(pods[0])

    def ask(self, prompt: str, pod: str | None = None) -> dict[str, Any]:
        """One model call made by the agent container, through its sidecar."""
        name = pod or self.pod(ready=False)["metadata"]["name"]
        answer = self.kube.exec_json(self.namespace, name, "agent",
                                     "python", "/opt/e2e/agent.py", "ask", prompt)  # fmt: skip
        return dict(answer)

    def provider_address(self) -> tuple[str, int]:
        """The fake provider's Service, as the agent would reach it without its sidecar."""
        return f"fake-provider.{self.namespace}.svc", 8080

    def connect(self, address: tuple[str, int], pod: str | None = None) -> dict[str, Any]:
        """A TCP connection attempted by the agent container itself, straight to ``address``."""
        name = pod or self.pod(ready=False)["metadata"]["name"]
        host, port = address
        command = ("python", "/opt/e2e/agent.py", "connect", host, str(port))
        answer = self.kube.exec_json(self.namespace, name, "agent", *command)
        return dict(answer)

    def delete(self) -> None:
        self.kube.run("delete", "namespace", self.namespace, "--wait=false", check=False)
