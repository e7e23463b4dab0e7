"""Client-layer calls of the ingest API: status apply, Events, watches, sinks, Secrets.

Every function here is synchronous (the Kubernetes client is); the ingest API calls them
through ``asyncio.to_thread`` and never on its event loop. Objects cross this boundary
as plain dicts. Requests go through :mod:`.apply` and :mod:`.objects` (the operator's
client layer); what is ingest-specific is the field manager, the HTTP-code results and
the watches.

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

from ..api.common import GROUP, VERSION
from . import apply as kapply
from . import objects
from .apply import ApiException
from .objects import get_governed_agent as get_governed_agent  # re-exported for ingest

log = logging.getLogger(__name__)
INGEST_FIELD_MANAGER = "promethios-ingest"
AGENTS = "governedagents"
POLICIES = "governancepolicies"
SECRETS = "secrets"
#: The watched plurals and their kinds in :data:`.apply.KINDS`.
_KIND_OF = {AGENTS: "GovernedAgent", POLICIES: "GovernancePolicy", SECRETS: "Secret"}

Client = kubernetes.client.ApiClient
WatchCallback = Callable[[str, dict[str, Any]], None]


def _apply_status(
    api: Client, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
) -> tuple[int, dict[str, Any] | None]:
    """SSA the ingest-owned status; HTTP code and the object as written (None on error)."""
    try:
        result = kapply.apply_status(
            api,
            namespace,
            name,
            status,
            field_manager=INGEST_FIELD_MANAGER,
            resource_version=resource_version,
        )
    except ApiException as error:
        if error.status in (404, 409, 422):
            if error.status != 409 or resource_version is None:
                log.warning("status apply %s/%s: HTTP %s", namespace, name, error.status)
            return int(error.status), None
        raise
    return 200, result


def apply_ingest_status(api: Client, namespace: str, name: str, status: dict[str, Any]) -> int:
    """Server-side apply ``status`` (ingest-owned fields) to a GovernedAgent; HTTP code."""
    return _apply_status(api, namespace, name, status, None)[0]


def apply_ingest_status_if(
    api: Client, namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> tuple[int, dict[str, Any] | None]:
    """:func:`apply_ingest_status` only if the object is at ``resource_version``.

    Returns the HTTP code and, on success, the object as written (its new
    resourceVersion and status); 409 means the object changed since that version.
    """
    return _apply_status(api, namespace, name, status, resource_version)


def create_event(api: Client, namespace: str, body: dict[str, Any]) -> int:
    """Create a core/v1 Event (``body`` names its namespace); HTTP code."""
    try:
        kapply.create(
            api, {**body, "metadata": {**body.get("metadata", {}), "namespace": namespace}}
        )
    except ApiException as error:
        return int(error.status or 500)
    return 201


def patch_event(api: Client, namespace: str, name: str, patch: dict[str, Any]) -> int:
    """Merge-patch an Event (count/lastTimestamp); HTTP code (404: it expired)."""
    try:
        kapply.merge_patch(api, "Event", namespace, name, patch, field_manager=None)
    except ApiException as error:
        return int(error.status or 500)
    return 200


def read_alert_sinks(api: Client, namespace: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The named AlertSinks that exist, as dicts (missing ones are skipped)."""
    sinks: list[dict[str, Any]] = []
    for name in names:
        sink = objects.get(api, "AlertSink", namespace, name)
        if sink is None:
            log.warning("AlertSink %s/%s not found", namespace, name)
            continue
        sinks.append(sink)
    return sinks


def secret_value(secret: dict[str, Any] | None, key: str) -> bytes | None:
    """Decoded ``data[key]`` of a Secret (as read), None if the Secret or key is absent."""
    value = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(value) if value else None


def read_secret(api: Client, namespace: str, name: str) -> dict[str, Any] | None:
    """A Secret as a dict, None if absent."""
    return objects.get(api, "Secret", namespace, name)


def list_objects(
    api: Client, kind: str, namespace: str | None, selector: str = ""
) -> tuple[list[dict[str, Any]], str]:
    """Every object of a kind (a plural; Secrets optionally labelled) as dicts, and the
    list's resourceVersion. Items without a ``kind`` (core lists drop it) get the plural."""
    items, version = objects.list_objects(
        api, _KIND_OF[kind], namespace, selector if kind == SECRETS else ""
    )
    for item in items:  # callers only need metadata/spec/data/status
        item.setdefault("kind", kind)
    return items, version


def _watch_call(
    api: Client, kind: str, namespace: str | None, selector: str
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The (typed, watchable) list function and its arguments for a kind and scope."""
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
    function, kwargs = _watch_call(api, kind, namespace, selector)
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
