"""Fakes and builders shared by the dashboard unit tests (and the dashboard benchmark).

:func:`agent_object` builds a GovernedAgent body as the API server returns it (with the
status the operator and ingest write); :class:`FakeReviewer` answers TokenReviews and
SubjectAccessReviews from tables; :class:`FakeViewer` records what would be done with the
viewer's token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from promethios.dashboard.viewer import ViewerError
from promethios.kube.access import Access, Identity

T0 = 1_700_000_100.0  # a 5-minute boundary


def rfc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(ctype: str, status: str, reason: str = "R", at: float = T0) -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": "m",
            "lastTransitionTime": rfc(at)}  # fmt: skip


def agent_object(
    namespace: str,
    name: str,
    *,
    ready: str = "True",
    trust: float | None = 0.9,
    action: str = "None",
    breach: int = 0,
    acknowledged: int = 0,
    fresh: str = "True",
    compliant: str = "True",
    history: list[dict[str, Any]] | None = None,
    recent: list[dict[str, Any]] | None = None,
    policy: str = "default",
    sinks: tuple[str, ...] = (),
    suspend: bool = False,
    now: float = T0,
) -> dict[str, Any]:
    """A GovernedAgent as stored, with operator- and ingest-written status."""
    governance: dict[str, Any] = {
        "violations": {"low": 1, "medium": 0, "high": 0, "critical": 0, "total": 1},
        "recentViolations": recent or [],
        "violationHistory": history or [],
    }
    if trust is not None:
        governance["trustScore"] = trust
    return {
        "apiVersion": "governance.promethios.ai/v1alpha1",
        "kind": "GovernedAgent",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": rfc(now - 3600),
        },
        "spec": {
            "image": "agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {
                "policyRef": {"name": policy},
                "acknowledgedBreach": acknowledged,
                "onBreach": "Quarantine",
            },
            "alertSinks": [{"name": s} for s in sinks],
            "suspend": suspend,
        },
        "status": {
            "conditions": [
                condition("Ready", ready),
                condition("HeartbeatFresh", fresh),
                condition("PolicyCompliant", compliant),
            ],
            "heartbeat": {"state": "active", "lastHeartbeat": rfc(now - 10)},
            "governance": governance,
            "enforcement": {"action": action, "breach": breach, "reason": "critical violation"},
            "children": {"deployment": name, "secret": f"{name}-api-key"},
            "replicas": 1,
            "readyReplicas": 1,
        },
    }


def bucket(start: float, **counts: int) -> dict[str, Any]:
    return {"start": rfc(start), **counts}


def policy_object(namespace: str, name: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"blockedPatterns": [{"name": "no-secrets", "pattern": "secret"}]},
        "status": {"conditions": [condition("Ready", "True", "Valid")]},
    }


def sink_object(namespace: str, name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"type": "webhook", "url": "https://hooks.example/secret-path"},
        "status": status,
    }


@dataclass
class FakeReviewer:
    """TokenReview: ``tokens`` maps token -> user; SAR: ``allowed`` holds
    (user, verb, resource, namespace) with namespace "" meaning cluster-wide."""

    tokens: dict[str, str] = field(default_factory=dict)
    allowed: set[tuple[str, str, str, str]] = field(default_factory=set)
    token_reviews: int = 0
    access_reviews: list[Access] = field(default_factory=list)
    fail: bool = False

    async def review_token(self, token: str) -> Identity | None:
        self.token_reviews += 1
        if self.fail:
            raise ConnectionError("API server down")
        user = self.tokens.get(token)
        return Identity(user, uid=f"uid-{user}", groups=("system:authenticated",)) if user else None

    async def review_access(self, identity: Identity, access: Access) -> bool:
        self.access_reviews.append(access)
        if self.fail:
            raise ConnectionError("API server down")
        key = (identity.username, access.verb, access.resource)
        return (*key, access.namespace) in self.allowed or (*key, "") in self.allowed


@dataclass
class FakeViewer:
    """Records the requests made with a viewer's token; ``refuse`` answers 403 to them."""

    patches: list[tuple[str, str, str, Mapping[str, Any]]] = field(default_factory=list)
    tokens_seen: list[str] = field(default_factory=list)
    events_by_agent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refuse: bool = False

    async def events(self, token: str, namespace: str, name: str, uid: str) -> list[dict[str, Any]]:
        self.tokens_seen.append(token)
        if self.refuse:
            raise ViewerError(403)
        return self.events_by_agent.get(f"{namespace}/{name}", [])

    async def child(
        self, token: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        self.tokens_seen.append(token)
        if self.refuse:
            raise ViewerError(403)
        return {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}

    async def patch_agent(
        self, token: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        self.tokens_seen.append(token)
        if self.refuse:
            raise ViewerError(403)
        self.patches.append((token, namespace, name, patch))
