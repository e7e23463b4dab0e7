"""Fakes for the operator's tests: typed agents, a key source, and ``World``, a tiny API server.

``World`` plays the API server for one agent: it stores what a plan applies (with
server-side defaults added, as a real server does) and the status the plan writes, so a
test can run reconcile after reconcile and check that a converged agent costs no writes.
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

from promethios.api import conditions as vocab
from promethios.api.agent import Agent
from promethios.api.governedagent import GovernedAgentSpec
from promethios.api.policy import GovernancePolicySpec
from promethios.builders import BuildSettings
from promethios.controller.observed import Observed, Plan
from promethios.controller.plan import plan_agent

SETTINGS = BuildSettings()

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
UID = "0f0e0d0c-0000-4000-8000-000000000001"


def spec_dict(**overrides: Any) -> dict[str, Any]:
    """A minimal valid GovernedAgent spec (camelCase, as stored), with overrides."""
    spec: dict[str, Any] = {
        "image": "example.com/agent:1.0",
        "modelProvider": {
            "type": "openai",
            "credentialsSecretRef": {"name": "openai-credentials", "key": "apiKey"},
        },
        "governance": {"policyRef": {"name": "default-policy"}},
    }
    spec.update(overrides)
    return spec


def make_agent(generation: int = 1, **overrides: Any) -> Agent:
    """A typed Agent named ``support-bot`` in ``team-a``."""
    return Agent(
        name="support-bot",
        namespace="team-a",
        uid=UID,
        generation=generation,
        spec=GovernedAgentSpec.model_validate(spec_dict(**overrides)),
    )


class Keys:
    """A deterministic key source: key-1, key-2, …"""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"key-{self.count}"


def with_server_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a GET returns after an apply: the manifest plus fields the server adds."""
    live = copy.deepcopy(manifest)
    live["metadata"].update({"uid": "child-uid", "resourceVersion": "1", "generation": 1})
    if live["kind"] == "Deployment":
        live["spec"].setdefault("replicas", 1)
        live["spec"]["strategy"] = {"type": "RollingUpdate"}
        pod = live["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            container["terminationMessagePath"] = "/dev/termination-log"
        pod["dnsPolicy"] = "ClusterFirst"
    if live["kind"] == "Service":
        live["spec"]["clusterIP"] = "10.96.0.10"
    return live


class World:
    """A tiny in-memory API server for one agent."""

    def __init__(
        self,
        agent: Agent,
        policy: GovernancePolicySpec | None = None,
        provider_keys: frozenset[str] | None = frozenset({"apiKey"}),
    ) -> None:
        self.agent = agent
        self.policy = policy if policy is not None else GovernancePolicySpec()
        self.provider_keys = provider_keys
        self.missing_sinks: tuple[str, ...] = ()
        self.live: dict[str, dict[str, Any] | None] = {}
        self.status: dict[str, Any] = {}
        self.writes = 0

    def observe(self) -> Observed:
        return Observed(
            self.agent,
            self.policy,
            self.provider_keys,
            self.missing_sinks,
            dict(self.live),
            copy.deepcopy(self.status),
        )

    def reconcile(self, now: datetime, keys: Any) -> Plan:
        plan = plan_agent(self.observe(), SETTINGS, now, keys)
        for manifest in plan.apply:
            self.live[manifest["kind"]] = with_server_defaults(manifest)
            self.writes += 1
        for kind, _ in plan.delete:
            self.live[kind] = None
            self.writes += 1
        if plan.scale_to is not None:
            deployment = self.live["Deployment"]
            assert deployment is not None, "scaled a Deployment that does not exist"
            deployment["spec"]["replicas"] = plan.scale_to
            self.writes += 1
        if plan.release is not None:
            self.status["enforcement"] = plan.release["status"]["enforcement"]
            self.writes += 1
        if plan.status is not None:
            self.status = apply_status(self.status, plan.status)
            self.writes += 1
        return plan

    def deployment_becomes_ready(self) -> None:
        deployment = self.live["Deployment"]
        assert deployment is not None
        replicas = deployment["spec"]["replicas"]
        deployment["status"] = {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }

    def secret_data(self) -> dict[str, str]:
        secret = self.live["Secret"]
        assert secret is not None
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    def secret_annotations(self) -> dict[str, str]:
        secret = self.live["Secret"]
        assert secret is not None
        return dict(secret["metadata"]["annotations"])


def apply_status(current: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of the operator's status: list-map merge of conditions."""
    merged = {k: v for k, v in current.items() if k not in ("replicas", "readyReplicas")}
    merged.pop("apiKey", None)
    others = [c for c in current.get("conditions", []) if c["type"] not in vocab.OPERATOR_TYPES]
    merged.update(copy.deepcopy(mine))
    merged["conditions"] = others + mine["conditions"]
    return merged
