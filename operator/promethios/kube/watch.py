"""List-then-watch of one kind in a background thread, handing events to a callback.

The ingest API keeps its view of GovernedAgents, GovernancePolicies and API-key Secrets
(and the dashboard its view of agents, policies and AlertSinks) current with
:func:`watch_forever`: a list (callback ``SYNC`` with ``{"items": [...]}``), then a
watch from the list's resourceVersion in short windows (so a stop is honoured within
seconds), re-listing when the watch expires (410), fails, or every resync period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import kubernetes

from ..api.common import GROUP, VERSION
from .apply import KINDS
from .client import Client
from .objects import list_objects

log = logging.getLogger(__name__)

WatchCallback = Callable[[str, dict[str, Any]], None]
#: Kinds :func:`watch_forever` can watch.
WATCHABLE = ("GovernedAgent", "GovernancePolicy", "AlertSink", "Secret")


def _watch_call(
    api: Client, kind: str, namespace: str | None, selector: str
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The (typed, watchable) list function and its arguments for a kind and scope."""
    if kind == "Secret":
        core = kubernetes.client.CoreV1Api(api)
        if namespace:
            return core.list_namespaced_secret, {"namespace": namespace, "label_selector": selector}
        return core.list_secret_for_all_namespaces, {"label_selector": selector}
    custom = kubernetes.client.CustomObjectsApi(api)
    plural = KINDS[kind].plural
    scope: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": plural}
    if selector:
        scope["label_selector"] = selector
    if namespace:
        return custom.list_namespaced_custom_object, {**scope, "namespace": namespace}
    return custom.list_cluster_custom_object, scope


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

    ``kind`` is one of :data:`WATCHABLE`. Items of a list carry their ``kind`` (core lists
    drop it). Re-lists every ``resync_seconds`` and whenever the watch expires or fails.
    """
    if kind not in WATCHABLE:
        raise ValueError(f"cannot watch {kind!r}; one of {', '.join(WATCHABLE)}")
    while not stop.is_set():
        try:
            items, version = list_objects(api, kind, namespace, selector)
            for item in items:
                item.setdefault("kind", kind)
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
