"""The ingest API's Kubernetes side: real sinks and watches over the client layer.

Everything here delegates to :mod:`promethios.kube` through ``asyncio.to_thread`` (the
Kubernetes client is synchronous and must never block the event loop); watch threads hand
their events to the loop with ``call_soon_threadsafe``. GovernedAgents, GovernancePolicies
and AlertSinks are parsed with the API models (:mod:`.agents`), never by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import pydantic

from ..api.agent import InvalidSpec
from ..api.alertsink import AlertSinkSpec
from ..api.apikey import SECRET_SELECTOR
from ..api.common import SecretKeyReference
from ..api.policy import TrustScoring
from ..kube import ingest_requests as requests
from ..kube.client import Client, ClientSettings, shared_client
from ..kube.watch import WatchCallback, watch_forever
from .agents import config_from_object, policy_scoring
from .alertformat import ResolvedSink
from .budgetcatalog import Owner
from .service import IngestService
from .state import stored_agent
from .writer import WriteResult

log = logging.getLogger(__name__)

AGENT, POLICY, SECRET = "GovernedAgent", "GovernancePolicy", "Secret"


class KubeStatusSink:
    """Server-side applies the ingest-owned status fields (conditionally: see :mod:`.writer`)."""

    def __init__(self, api: Client) -> None:
        self._api = api

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> int:
        """SSA on the status subresource (field manager ``promethios-ingest``)."""
        return await asyncio.to_thread(
            requests.apply_ingest_status, self._api, namespace, name, status
        )

    async def apply_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> WriteResult:
        """SSA with ``metadata.resourceVersion`` as a precondition (409 if it moved on)."""
        code, obj = await asyncio.to_thread(
            requests.apply_ingest_status_if, self._api, namespace, name, status, resource_version
        )
        return WriteResult(code, obj)

    async def read_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET the GovernedAgent (after a 409)."""
        return await asyncio.to_thread(requests.get_governed_agent, self._api, namespace, name)


class KubeUsageStore:
    """Reads GovernedAgents and GovernancePolicies and applies their ``status.usage``."""

    def __init__(self, api: Client) -> None:
        self._api = api

    async def read_owner(self, owner: Owner) -> dict[str, Any] | None:
        """GET the owner object (after a 409, or before its first write)."""
        return await asyncio.to_thread(
            requests.read_object, self._api, owner.kind, owner.namespace, owner.name
        )

    async def write_usage_if(
        self, owner: Owner, usage: dict[str, Any], resource_version: str
    ) -> WriteResult:
        """SSA ``status.usage`` with ``metadata.resourceVersion`` as a precondition."""
        code, obj = await asyncio.to_thread(
            requests.apply_usage_status_if,
            self._api,
            owner.kind,
            owner.namespace,
            owner.name,
            usage,
            resource_version,
        )
        return WriteResult(code, obj)


class KubeSinkStatus:
    """Reads AlertSinks and applies their status (see :mod:`.sinkstatus`)."""

    def __init__(self, api: Client) -> None:
        self._api = api

    async def read_sink(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET the AlertSink."""
        return await asyncio.to_thread(requests.read_alert_sink, self._api, namespace, name)

    async def apply_sink_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> int:
        """SSA its status with a resourceVersion precondition."""
        return await asyncio.to_thread(
            requests.apply_alert_sink_status_if,
            self._api,
            namespace,
            name,
            status,
            resource_version,
        )


class KubeEventSink:
    """Creates and patches core/v1 Events."""

    def __init__(self, api: Client) -> None:
        self._api = api

    async def create_event(self, namespace: str, body: dict[str, Any]) -> int:
        """Create an Event."""
        return await asyncio.to_thread(requests.create_event, self._api, namespace, body)

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> int:
        """Patch an Event's count."""
        return await asyncio.to_thread(requests.patch_event, self._api, namespace, name, patch)


class KubeSinkResolver:
    """Reads AlertSinks (parsed with :class:`AlertSinkSpec`) and the Secrets they reference."""

    def __init__(self, api: Client) -> None:
        self._api = api

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        """The named sinks, with URLs and keys read from their Secrets."""
        return await asyncio.to_thread(self._resolve, namespace, names)

    def _resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        resolved = []
        secrets: dict[str, dict[str, Any] | None] = {}  # one GET per Secret, however shared
        for sink in requests.read_alert_sinks(self._api, namespace, names):
            name = str((sink.get("metadata") or {}).get("name"))
            try:
                spec = AlertSinkSpec.model_validate(sink.get("spec") or {})
            except pydantic.ValidationError as error:
                log.warning(
                    "AlertSink %s/%s does not parse (%d errors); skipped",
                    namespace,
                    name,
                    error.error_count(),
                )
                continue
            url_from_secret = not spec.url and spec.url_secret_ref is not None
            url = spec.url or self._secret_text(namespace, spec.url_secret_ref, secrets) or ""
            resolved.append(
                ResolvedSink(
                    name,
                    str(spec.type),
                    url.strip(),
                    str(spec.min_severity),
                    float(spec.timeout_seconds),
                    spec.max_retries,
                    self._secret(namespace, spec.signing_secret_ref, secrets),
                    self._secret_text(namespace, spec.routing_key_secret_ref, secrets),
                    url_field="spec.urlSecretRef" if url_from_secret else "spec.url",
                )
            )
        return resolved

    def _secret(
        self,
        namespace: str,
        ref: SecretKeyReference | None,
        secrets: dict[str, dict[str, Any] | None],
    ) -> bytes | None:
        if ref is None:
            return None
        if ref.name not in secrets:
            secrets[ref.name] = requests.read_secret(self._api, namespace, ref.name)
        return requests.secret_value(secrets[ref.name], ref.key)

    def _secret_text(
        self,
        namespace: str,
        ref: SecretKeyReference | None,
        secrets: dict[str, dict[str, Any] | None],
    ) -> str | None:
        value = self._secret(namespace, ref, secrets)
        return value.decode("utf-8", "replace").strip() if value is not None else None


class ClusterFeed:
    """Watches GovernedAgents, GovernancePolicies and api-key Secrets into the service."""

    def __init__(self, service: IngestService, api: Client) -> None:
        self._service = service
        self._api = api
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scorings: dict[str, TrustScoring] = {}
        self._agents: dict[str, dict[str, Any]] = {}
        self._pending_syncs: set[tuple[str, str | None]] = set()

    def start(self) -> None:
        """One watch thread per kind per namespace (or cluster-wide)."""
        scopes: list[str | None] = list(self._service.settings.namespaces) or [None]
        for scope in scopes:
            for kind, selector in ((POLICY, ""), (AGENT, ""), (SECRET, SECRET_SELECTOR)):
                self._pending_syncs.add((kind, scope))
                thread = threading.Thread(
                    target=watch_forever,
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

    def _handoff(self, kind: str, scope: str | None) -> WatchCallback:
        def callback(event_type: str, obj: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._apply, kind, scope, event_type, obj)

        return callback

    def _apply(self, kind: str, scope: str | None, event_type: str, obj: dict[str, Any]) -> None:
        try:
            if kind == SECRET:
                self._on_secret(scope, event_type, obj)
            elif kind == POLICY:
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
            store.replace_scope(scope, obj["items"])
        elif event_type == "DELETED":
            store.remove_secret(obj)
        else:
            store.put_secret(obj)

    def _on_policy(self, event_type: str, obj: dict[str, Any]) -> None:
        items = obj["items"] if event_type == "SYNC" else [obj]
        changed = event_type == "SYNC"
        for item in items:
            metadata = item.get("metadata") or {}
            key = f"{metadata.get('namespace')}/{metadata.get('name')}"
            if event_type == "DELETED":
                changed = self._scorings.pop(key, None) is not None or changed
                self._service.policy_removed(
                    str(metadata.get("namespace")), str(metadata.get("name"))
                )
            else:
                scoring = policy_scoring(item)
                changed = changed or self._scorings.get(key) != scoring
                self._scorings[key] = scoring
                self._service.policy_seen(item)
        if changed:  # re-derive configs that use the policy (not for a status-only change)
            for agent in list(self._agents.values()):
                self._upsert(agent)

    def _on_agent(self, scope: str | None, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "SYNC":
            seen = {self._upsert(item) for item in obj["items"]}
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
        metadata = obj.get("metadata") or {}
        agent_id = f"{metadata.get('namespace')}/{metadata.get('name')}"
        self._agents[agent_id] = obj
        try:
            config = config_from_object(obj, self._scorings)
        except InvalidSpec:
            log.warning("GovernedAgent %s does not parse; not served until it does", agent_id)
            return agent_id
        self._service.upsert_agent(config, stored=stored_agent(obj))
        return agent_id


def _in_scope(agent_id: str, scope: str | None) -> bool:
    return scope is None or agent_id.startswith(scope + "/")


def cluster_client(kubeconfig: str | None) -> Client:
    """The process-wide shared ApiClient."""
    return shared_client(ClientSettings(kubeconfig=kubeconfig))
