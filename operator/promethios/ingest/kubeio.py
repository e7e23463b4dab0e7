"""The ingest API's Kubernetes side: real sinks and watches over the client layer.

Everything here delegates to :mod:`promethios.kube.governance` through
``asyncio.to_thread`` (the Kubernetes client is synchronous and must never block the
event loop); watch threads hand their events to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from ..api.policy import TrustScoring
from ..kube import governance as kg
from ..kube.client import ClientSettings, shared_client
from .aggregate import AgentConfig, observed_from_object
from .alerts import ResolvedSink
from .keystore import SECRET_SELECTOR, replace_scope
from .service import IngestService
from .writer import WriteResult

log = logging.getLogger(__name__)


class KubeStatusSink:
    """Server-side applies the ingest-owned status fields (conditionally: see :mod:`.writer`)."""

    def __init__(self, api: kg.Client) -> None:
        self._api = api

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        """SSA on the status subresource (field manager ``promethios-ingest``)."""
        return await asyncio.to_thread(kg.apply_ingest_status, self._api, namespace, name, status)

    async def apply_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> WriteResult:
        """SSA with ``metadata.resourceVersion`` as a precondition (409 if it moved on)."""
        code, obj = await asyncio.to_thread(
            kg.apply_ingest_status_if, self._api, namespace, name, status, resource_version
        )
        return WriteResult(code, obj)

    async def read_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET the GovernedAgent (after a 409)."""
        return await asyncio.to_thread(kg.get_governed_agent, self._api, namespace, name)


class KubeEventSink:
    """Creates and patches core/v1 Events."""

    def __init__(self, api: kg.Client) -> None:
        self._api = api

    async def create_event(self, namespace: str, body: dict[str, Any]) -> int:
        """Create an Event."""
        return await asyncio.to_thread(kg.create_event, self._api, namespace, body)

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> int:
        """Patch an Event's count."""
        return await asyncio.to_thread(kg.patch_event, self._api, namespace, name, patch)


class KubeSinkResolver:
    """Reads AlertSinks and the Secrets they reference."""

    def __init__(self, api: kg.Client) -> None:
        self._api = api

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        """The named sinks, with URLs and keys read from their Secrets."""
        return await asyncio.to_thread(self._resolve, namespace, names)

    def _resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        resolved = []
        secrets: dict[str, dict[str, Any] | None] = {}  # one GET per Secret, however shared
        for sink in kg.read_alert_sinks(self._api, namespace, names):
            spec = sink.get("spec") or {}
            name = str((sink.get("metadata") or {}).get("name"))
            url = (
                spec.get("url")
                or self._secret_text(namespace, spec.get("urlSecretRef"), secrets)
                or ""
            )
            signing = self._secret(namespace, spec.get("signingSecretRef"), secrets)
            routing = self._secret_text(namespace, spec.get("routingKeySecretRef"), secrets)
            resolved.append(
                ResolvedSink(
                    name,
                    str(spec.get("type", "webhook")),
                    url.strip(),
                    str(spec.get("minSeverity", "high")),
                    float(spec.get("timeoutSeconds", 5)),
                    int(spec.get("maxRetries", 5)),
                    signing,
                    routing,
                )
            )
        return resolved

    def _secret(
        self,
        namespace: str,
        ref: dict[str, Any] | None,
        secrets: dict[str, dict[str, Any] | None],
    ) -> bytes | None:
        if not ref:
            return None
        name = str(ref["name"])
        if name not in secrets:
            secrets[name] = kg.read_secret(self._api, namespace, name)
        return kg.secret_value(secrets[name], str(ref.get("key", "apiKey")))

    def _secret_text(
        self,
        namespace: str,
        ref: dict[str, Any] | None,
        secrets: dict[str, dict[str, Any] | None],
    ) -> str | None:
        value = self._secret(namespace, ref, secrets)
        return value.decode("utf-8", "replace").strip() if value is not None else None


def agent_config(obj: dict[str, Any], policies: dict[str, TrustScoring]) -> AgentConfig:
    """The ingest view of a GovernedAgent dict (defaults where the spec is silent)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    governance = spec.get("governance") or {}
    status = obj.get("status") or {}
    namespace = str(metadata.get("namespace"))
    policy = str((governance.get("policyRef") or {}).get("name") or "")
    return AgentConfig(
        namespace=namespace,
        name=str(metadata.get("name")),
        governance_identity=str(status.get("governanceIdentity") or ""),
        uid=str(metadata.get("uid") or ""),
        trust_threshold=float(governance.get("trustThreshold", 0.7)),
        heartbeat_interval=int(governance.get("heartbeatIntervalSeconds", 30)),
        missed_before_stale=int(governance.get("missedHeartbeatsBeforeStale", 3)),
        on_breach=str(governance.get("onBreach", "Alert")),
        acknowledged_breach=int(governance.get("acknowledgedBreach", 0)),
        alert_sinks=tuple(str(ref.get("name")) for ref in spec.get("alertSinks") or []),
        policy_name=policy,
        scoring=policies.get(f"{namespace}/{policy}", TrustScoring()),
    )


class ClusterFeed:
    """Watches GovernedAgents, GovernancePolicies and api-key Secrets into the service."""

    def __init__(self, service: IngestService, api: kg.Client) -> None:
        self._service = service
        self._api = api
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._policies: dict[str, TrustScoring] = {}
        self._agents: dict[str, dict[str, Any]] = {}
        self._pending_syncs: set[tuple[str, str | None]] = set()

    def start(self) -> None:
        """One watch thread per kind per namespace (or cluster-wide)."""
        scopes: list[str | None] = list(self._service.settings.namespaces) or [None]
        for scope in scopes:
            for kind, selector in (
                (kg.POLICIES, ""),
                (kg.AGENTS, ""),
                (kg.SECRETS, SECRET_SELECTOR),
            ):
                self._pending_syncs.add((kind, scope))
                thread = threading.Thread(
                    target=kg.watch_forever,
                    args=(
                        self._api,
                        kind,
                        scope,
                        self._handoff(kind, scope),
                        self._stop,
                        selector,
                        self._service.settings.resync_seconds,
                    ),
                    name=f"ingest-watch-{kind}-{scope or 'all'}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def stop(self) -> None:
        """Ask the watch threads to finish (they exit within a few seconds)."""
        self._stop.set()

    def _handoff(self, kind: str, scope: str | None) -> kg.WatchCallback:
        def callback(event_type: str, obj: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._apply, kind, scope, event_type, obj)

        return callback

    def _apply(self, kind: str, scope: str | None, event_type: str, obj: dict[str, Any]) -> None:
        try:
            if kind == kg.SECRETS:
                self._on_secret(scope, event_type, obj)
            elif kind == kg.POLICIES:
                self._on_policy(event_type, obj)
            else:
                self._on_agent(scope, event_type, obj)
        except Exception:  # a malformed object must not stop the feed
            log.exception("handling %s %s failed", event_type, kind)
        if event_type == "SYNC":
            self._pending_syncs.discard((kind, scope))
            if not self._pending_syncs:
                self._service.ready.set()

    def _on_secret(self, scope: str | None, event_type: str, obj: dict[str, Any]) -> None:
        store = self._service.keystore
        if event_type == "SYNC":
            replace_scope(store, scope, obj["items"])
        elif event_type == "DELETED":
            store.remove_secret(obj)
        else:
            store.put_secret(obj)

    def _on_policy(self, event_type: str, obj: dict[str, Any]) -> None:
        items = obj["items"] if event_type == "SYNC" else [obj]
        for item in items:
            metadata = item.get("metadata") or {}
            key = f"{metadata.get('namespace')}/{metadata.get('name')}"
            if event_type == "DELETED":
                self._policies.pop(key, None)
                continue
            scoring = (item.get("spec") or {}).get("trustScoring") or {}
            try:
                self._policies[key] = TrustScoring.model_validate(scoring)
            except ValueError:
                self._policies[key] = TrustScoring()
        for agent in list(self._agents.values()):  # re-derive configs that use the policy
            self._service.upsert_agent(agent_config(agent, self._policies))

    def _on_agent(self, scope: str | None, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "SYNC":
            seen = set()
            for item in obj["items"]:
                seen.add(self._upsert(item))
            for agent_id in [a for a in self._agents if a not in seen and _in_scope(a, scope)]:
                self._agents.pop(agent_id)
                self._service.remove_agent(agent_id)
            return
        metadata = obj.get("metadata") or {}
        agent_id = f"{metadata.get('namespace')}/{metadata.get('name')}"
        if event_type == "DELETED":
            self._agents.pop(agent_id, None)
            self._service.remove_agent(agent_id)
        else:
            self._upsert(obj)

    def _upsert(self, obj: dict[str, Any]) -> str:
        config = agent_config(obj, self._policies)
        self._agents[config.agent_id] = obj
        self._service.upsert_agent(config, observed=observed_from_object(obj))
        return config.agent_id


def _in_scope(agent_id: str, scope: str | None) -> bool:
    return scope is None or agent_id.startswith(scope + "/")


def cluster_client(kubeconfig: str | None) -> kg.Client:
    """The process-wide shared ApiClient."""
    return shared_client(ClientSettings(kubeconfig=kubeconfig))
