"""The ingest API's requests: its status apply, Events, AlertSink and Secret reads.

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
- Budgets: ``status.usage`` of GovernedAgents and GovernancePolicies, server-side applied
  with field manager ``promethios-budgets`` and a resourceVersion precondition.
- Reads: AlertSinks by name and the Secrets they reference (decoded only on demand).

Watches are :mod:`.watch`'s.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from ..api.metadata import BUDGET_FIELD_MANAGER, INGEST_FIELD_MANAGER
from . import apply as kapply
from . import objects
from .apply import KINDS, ApiException
from .client import Client

log = logging.getLogger(__name__)


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


def apply_usage_status_if(
    api: Client,
    kind: str,
    namespace: str,
    name: str,
    usage: dict[str, Any],
    resource_version: str,
) -> tuple[int, dict[str, Any] | None]:
    """SSA ``status.usage`` of a GovernedAgent or GovernancePolicy (field manager
    ``promethios-budgets``) if the object is still at ``resource_version``; the HTTP code
    (409: another writer got there first, 404: gone) and the object as written."""
    try:
        result = kapply.apply_status(
            api,
            namespace,
            name,
            {"usage": usage},
            field_manager=BUDGET_FIELD_MANAGER,
            resource_version=resource_version,
            kind=kind,
        )
    except ApiException as error:
        if error.status in (404, 409, 422):
            if error.status != 409:
                log.warning("usage apply %s %s/%s: HTTP %s", kind, namespace, name, error.status)
            return int(error.status), None
        raise
    return 200, result


def read_object(api: Client, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A GovernedAgent or GovernancePolicy as stored, None if it is gone."""
    return objects.get(api, kind, namespace, name)


def apply_alert_sink_status_if(
    api: Client, namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> int:
    """SSA an AlertSink's status (field manager ``promethios-ingest``) if the sink is still
    at ``resource_version``; the HTTP code (409: another replica wrote first, 404: gone)."""
    manifest = {
        "apiVersion": KINDS["AlertSink"].api_version,
        "kind": "AlertSink",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
        "status": status,
    }
    try:
        kapply.apply(api, manifest, subresource="status", field_manager=INGEST_FIELD_MANAGER)
    except ApiException as error:
        if error.status in (404, 409, 422):
            return int(error.status)
        raise
    return 200


def read_alert_sink(api: Client, namespace: str, name: str) -> dict[str, Any] | None:
    """One AlertSink as stored (with its resourceVersion), None if absent."""
    return objects.get(api, "AlertSink", namespace, name)


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


def get_governed_agent(api: Client, namespace: str, name: str) -> dict[str, Any] | None:
    """A GovernedAgent as stored (after a 409), None if it is gone."""
    return objects.get_governed_agent(api, namespace, name)


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
