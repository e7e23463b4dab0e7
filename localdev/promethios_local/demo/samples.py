"""The objects ``make run`` applies: a policy, a provider credential and a GovernedAgent."""

from __future__ import annotations

from typing import Any

from promethios.api.common import API_VERSION

DEMO_NAMESPACE = "demo"
DEMO_AGENT = "support-bot"
DEMO_POLICY = "baseline"
DEMO_PROVIDER_SECRET = "model-provider"
#: A made-up credential: the demo shows that only the sidecar ever sends it upstream.
DEMO_PROVIDER_KEY = "sk-demo-provider-credential-0123456789"


def demo_objects(upstream_url: str, namespace: str = DEMO_NAMESPACE) -> list[dict[str, Any]]:
    """Namespace, provider Secret, GovernancePolicy and GovernedAgent for the demo."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": DEMO_PROVIDER_SECRET, "namespace": namespace},
            "stringData": {"apiKey": DEMO_PROVIDER_KEY},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "GovernancePolicy",
            "metadata": {"name": DEMO_POLICY, "namespace": namespace},
            "spec": {
                "blockedPatterns": [
                    {"name": "no-internal-hosts", "pattern": r"\binternal\.corp\b"},
                ],
                "piiDetection": {"action": "redact", "severity": "high"},
                "allowedModels": ["gpt-4o-mini", "gpt-4o"],
                "rateLimits": {"requestsPerMinute": 600},
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "GovernedAgent",
            "metadata": {"name": DEMO_AGENT, "namespace": namespace},
            "spec": {
                "image": "registry.example/support-bot:1.0",
                "replicas": 1,
                "modelProvider": {
                    "type": "custom",
                    "baseUrl": upstream_url,
                    "credentialsSecretRef": {"name": DEMO_PROVIDER_SECRET, "key": "apiKey"},
                },
                "governance": {
                    "policyRef": {"name": DEMO_POLICY},
                    "mode": "enforce",
                    "heartbeatIntervalSeconds": 5,
                    "missedHeartbeatsBeforeStale": 3,
                },
            },
        },
    ]
