"""Client-layer calls of the ingest API: status apply, Events, watches, sinks, Secrets.

Every function here is synchronous (the Kubernetes client is); the ingest API calls them
through ``asyncio.to_thread`` and never on its event loop. Objects cross this boundary
as plain dicts.

- Status: server-side apply on the ``status`` subresource with field manager
  ``promethios-ingest`` and ``force=true``. Ingest owns ``status.heartbeat``,
  ``status.governance``, ``status.enforcement`` and the ``HeartbeatFresh`` and
  ``PolicyCompliant`` entries of the ``conditions`` list-map (keyed by ``type``), so the
  operator's own conditions are left alone. With several ingest replicas the apply carries
  ``metadata.resourceVersion`` (:func:`apply_ingest_status_if`): the API server then
  treats it as a precondition and answers 409 when another writer got there first.
- Events: core/v1 Events created, then merge-patched when they repeat.
- Watches: list then watch GovernedAgents, GovernancePolicies and api-key Secrets in a
  background thread, handing ``(type, object)`` to a callback; re-lists on expiry.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ..api.common import API_VERSION, GROUP, VERSION

log = logging.getLogger(__name__)
INGEST_FIELD_MANAGER = "promethios-ingest"
AGENTS = "governedagents"
POLICIES = "governancepolicies"
ALERT_SINKS = "alertsinks"
SECRETS = "secrets"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"

Client = kubernetes.client.ApiClient
WatchCallback = Callable[[str, dict[str, Any]], None]


def apply_ingest_status(api: Client, namespace: str, name: str, status: dict[str, Any]) -> int:
    """Server-side apply ``status`` (ingest-owned fields) to a GovernedAgent; HTTP code."""
    body = {
        "apiVersion": API_VERSION,
        "kind": "GovernedAgent",
        "metadata": {"name": name, "namespace": namespace},
        "status": status,
    }
    try:
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            AGENTS,
            name,
            body,
            field_manager=INGEST_FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )
    except ApiException as error:
        if error.status in (404, 409, 422):
            log.warning("status apply %s/%s: HTTP %s", namespace, name, error.status)
            return int(error.status)
        raise
    return 200


def apply_ingest_status_if(
    api: Client, namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> tuple[int, dict[str, Any] | None]:
    """:func:`apply_ingest_status` only if the object is at ``resource_version``.

    Returns the HTTP code and, on success, the object as written (its new
    resourceVersion and status); 409 means the object changed since that version.
    """
    body = {
        "apiVersion": API_VERSION,
        "kind": "GovernedAgent",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
        "status": status,
    }
    try:
        result = kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            AGENTS,
            name,
            body,
            field_manager=INGEST_FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )
    except ApiException as error:
        if error.status in (404, 409, 422):
            if error.status != 409:
                log.warning("status apply %s/%s: HTTP %s", namespace, name, error.status)
            return int(error.status), None
        raise
    return 200, result if isinstance(result, dict) else None


def get_governed_agent(api: Client, namespace: str, name: str) -> dict[str, Any] | None:
    """One GovernedAgent as a dict, None if absent."""
    try:
        obj = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, AGENTS, name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return obj if isinstance(obj, dict) else None


def create_event(api: Client, namespace: str, body: dict[str, Any]) -> int:
    """Create a core/v1 Event; HTTP code."""
    try:
        # The client coerces the dict into a CoreV1Event (pydantic validate_call).
        kubernetes.client.CoreV1Api(api).create_namespaced_event(namespace, body)  # type: ignore[arg-type]
    except ApiException as error:
        return int(error.status or 500)
    return 201


def patch_event(api: Client, namespace: str, name: str, patch: dict[str, Any]) -> int:
    """Merge-patch an Event (count/lastTimestamp); HTTP code (404: it expired)."""
    try:
        kubernetes.client.CoreV1Api(api).patch_namespaced_event(
            name, namespace, patch, _content_type=MERGE_PATCH
        )
    except ApiException as error:
        return int(error.status or 500)
    return 200


def list_events(api: Client, namespace: str, field_selector: str = "") -> list[dict[str, Any]]:
    """Events in a namespace as dicts (tests)."""
    result = kubernetes.client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=field_selector or None
    )
    items: list[dict[str, Any]] = api.sanitize_for_serialization(result).get("items", [])
    return items


def read_alert_sinks(api: Client, namespace: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The named AlertSinks that exist, as dicts (missing ones are skipped)."""
    custom = kubernetes.client.CustomObjectsApi(api)
    sinks: list[dict[str, Any]] = []
    for name in names:
        try:
            sink = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ALERT_SINKS, name)
        except ApiException as error:
            if error.status != 404:
                raise
            log.warning("AlertSink %s/%s not found", namespace, name)
            continue
        if isinstance(sink, dict):
            sinks.append(sink)
    return sinks


def read_secret_value(api: Client, namespace: str, name: str, key: str) -> bytes | None:
    """Decoded ``data[key]`` of a Secret, None if the Secret or key is absent."""
    try:
        secret = kubernetes.client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    value = (secret.data or {}).get(key)
    return base64.b64decode(value) if value else None


def _list_call(
    api: Client, kind: str, namespace: str | None, selector: str
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The list function (watchable) and its arguments for a kind and scope."""
    if kind == SECRETS:
        core = kubernetes.client.CoreV1Api(api)
        if namespace:
            return core.list_namespaced_secret, {"namespace": namespace, "label_selector": selector}
        return core.list_secret_for_all_namespaces, {"label_selector": selector}
    custom = kubernetes.client.CustomObjectsApi(api)
    if namespace:
        return custom.list_namespaced_custom_object, {
            "group": GROUP,
            "version": VERSION,
            "namespace": namespace,
            "plural": kind,
        }
    return custom.list_cluster_custom_object, {"group": GROUP, "version": VERSION, "plural": kind}


def list_objects(
    api: Client, kind: str, namespace: str | None, selector: str = ""
) -> tuple[list[dict[str, Any]], str]:
    """Every object of a kind (optionally labelled) as dicts, and the list's resourceVersion."""
    function, kwargs = _list_call(api, kind, namespace, selector)
    result = function(**kwargs)
    if not isinstance(result, dict):
        result = api.sanitize_for_serialization(result)
    items: list[dict[str, Any]] = result.get("items") or []
    for item in items:  # typed lists drop kind; callers only need metadata/spec/data/status
        item.setdefault("kind", kind)
    return items, str((result.get("metadata") or {}).get("resourceVersion") or "")


def watch_forever(
    api: Client,
    kind: str,
    namespace: str | None,
    on_event: WatchCallback,
    stop: threading.Event,
    selector: str = "",
    resync_seconds: float = 300.0,
) -> None:
    """List (callback ``SYNC`` with ``{"items": [...]}``), then watch until ``stop``.

    Re-lists every ``resync_seconds`` and whenever the watch expires (410) or fails.
    """
    while not stop.is_set():
        try:
            items, version = list_objects(api, kind, namespace, selector)
            on_event("SYNC", {"items": items})
            _watch_until(api, kind, namespace, selector, version, on_event, stop, resync_seconds)
        except Exception as error:  # network or API error: back off and re-list
            log.warning("watch of %s in %s failed: %s", kind, namespace or "all namespaces", error)
            stop.wait(2.0)


def _watch_until(
    api: Client,
    kind: str,
    namespace: str | None,
    selector: str,
    version: str,
    on_event: WatchCallback,
    stop: threading.Event,
    resync_seconds: float,
) -> None:
    """Watch from ``version`` in short windows (so ``stop`` is honoured) until resync."""
    function, kwargs = _list_call(api, kind, namespace, selector)
    deadline = threading.Event()
    timer = threading.Timer(resync_seconds, deadline.set)
    timer.daemon = True
    timer.start()
    try:
        while not stop.is_set() and not deadline.is_set():
            watcher = kubernetes.watch.Watch()
            for event in watcher.stream(
                function, resource_version=version, timeout_seconds=5, **kwargs
            ):
                if stop.is_set():
                    watcher.stop()
                    return
                kind_of_event = event.get("type", "")
                raw = event.get("raw_object") or {}
                if kind_of_event == "ERROR":
                    return  # typically 410 Gone: re-list
                version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                if kind_of_event != "BOOKMARK":
                    on_event(kind_of_event, raw)
            version = watcher.resource_version or version
    finally:
        timer.cancel()
