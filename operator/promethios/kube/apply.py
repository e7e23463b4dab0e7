"""Writes: server-side apply of any object, merge patches, deletes, and raw requests.

Every write carries the field manager ``promethios-operator`` unless the caller names its
own. Objects are plain dicts; the typed models are serialised by the caller. Requests go
through the process-wide :func:`~promethios.kube.client.shared_client`, so every thread
shares one pool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import kubernetes

from ..api.common import GROUP, VERSION
from ..api.metadata import OPERATOR_FIELD_MANAGER
from .client import Client

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_CONTENT_TYPE = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0

ApiException = kubernetes.client.exceptions.ApiException


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    plural: str

    def path(
        self, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The collection (cluster-wide when ``namespace`` is None) or object path."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        scope = f"/namespaces/{namespace}" if namespace is not None else ""
        path = f"{prefix}{scope}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


KINDS: dict[str, Kind] = {
    "Secret": Kind("v1", "secrets"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Service": Kind("v1", "services"),
    "Pod": Kind("v1", "pods"),
    "Event": Kind("v1", "events"),
    "Deployment": Kind("apps/v1", "deployments"),
    "ControllerRevision": Kind("apps/v1", "controllerrevisions"),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies"),
    "Lease": Kind("coordination.k8s.io/v1", "leases"),
    "GovernedAgent": Kind(f"{GROUP}/{VERSION}", "governedagents"),
    "GovernancePolicy": Kind(f"{GROUP}/{VERSION}", "governancepolicies"),
    "AlertSink": Kind(f"{GROUP}/{VERSION}", "alertsinks"),
}


def request(
    client: Client,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """One authenticated request; the decoded JSON response. Raises ApiException on non-2xx.

    ``headers`` are added to the request (:mod:`.access` passes a viewer's own token);
    ``timeout`` bounds it in seconds (the leader election's renewals need a short one).
    """
    serialized = client.param_serialize(
        method,
        path,
        query_params=list(query) or None,
        header_params={
            "Accept": "application/json",
            "Content-Type": content_type,
            **(headers or {}),
        },
        body=body,
        auth_settings=["BearerToken"],
    )
    response = client.call_api(*serialized, _request_timeout=timeout)
    response.read()
    text = response.data.decode() if response.data else ""
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    return cast(dict[str, Any], json.loads(text)) if text else {}


def apply(
    client: Client,
    manifest: Mapping[str, Any],
    *,
    subresource: str | None = None,
    field_manager: str = OPERATOR_FIELD_MANAGER,
) -> dict[str, Any]:
    """Server-side apply ``manifest`` (force: the operator owns what it sets)."""
    metadata = manifest["metadata"]
    path = KINDS[manifest["kind"]].path(metadata["namespace"], metadata["name"], subresource)
    return request(
        client,
        "PATCH",
        path,
        query=[("fieldManager", field_manager), ("force", "true")],
        body=dict(manifest),
        content_type=APPLY_CONTENT_TYPE,
    )


def apply_status(
    client: Client,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    *,
    field_manager: str = OPERATOR_FIELD_MANAGER,
    resource_version: str | None = None,
    kind: str = "GovernedAgent",
) -> dict[str, Any]:
    """Server-side apply one writer's part of a GovernedAgent's (or another ``kind``'s) status.

    Conditions are a list-map keyed by type, so the operator applying
    Ready/Progressing/Degraded leaves the ingest API's conditions alone (and vice versa:
    the ingest API calls this with its own ``field_manager``). A ``resource_version`` is
    a precondition: the API server answers 409 when the object has moved on.
    """
    metadata = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    manifest = {
        "apiVersion": KINDS[kind].api_version,
        "kind": kind,
        "metadata": metadata,
        "status": dict(status),
    }
    return apply(client, manifest, subresource="status", field_manager=field_manager)


def merge_patch(
    client: Client,
    kind: str,
    namespace: str,
    name: str,
    patch: Mapping[str, Any],
    *,
    subresource: str | None = None,
    field_manager: str | None = OPERATOR_FIELD_MANAGER,
) -> dict[str, Any]:
    """A JSON merge patch (used where another writer shares the field, e.g. enforcement).

    ``field_manager=None`` sends none (the API server then names the manager itself).
    """
    return request(
        client,
        "PATCH",
        KINDS[kind].path(namespace, name, subresource),
        query=[("fieldManager", field_manager)] if field_manager is not None else (),
        body=dict(patch),
        content_type=MERGE_CONTENT_TYPE,
    )


def scale(client: Client, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any]:
    """Set ``replicas`` through the scale subresource (nothing else of the object changes)."""
    return merge_patch(
        client, kind, namespace, name, {"spec": {"replicas": replicas}}, subresource="scale"
    )


def namespace_terminating(error: BaseException) -> bool:
    """The API server refused a write because the object's namespace is being deleted
    (403, cause ``NamespaceTerminating``): what deleting a namespace does to writes still
    in flight into it, not a fault of the writer."""
    return (
        isinstance(error, ApiException)
        and error.status == 403
        and "NamespaceTerminating" in str(error.body or "")
    )


def delete(client: Client, kind: str, namespace: str, name: str) -> bool:
    """Delete an object; False when it was already gone."""
    try:
        request(client, "DELETE", KINDS[kind].path(namespace, name))
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def replace(client: Client, body: Mapping[str, Any], field_manager: str) -> dict[str, Any]:
    """PUT a whole object (its metadata.resourceVersion, if set, is a precondition: 409)."""
    metadata = body["metadata"]
    path = KINDS[body["kind"]].path(metadata["namespace"], metadata["name"])
    return request(client, "PUT", path, query=[("fieldManager", field_manager)], body=dict(body))


def create(client: Client, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """POST a new object into its namespace (Events, benchmarks' plain creates)."""
    metadata = manifest["metadata"]
    return request(
        client, "POST", KINDS[manifest["kind"]].path(metadata["namespace"]), body=dict(manifest)
    )


def post_event(
    client: Client,
    involved: Mapping[str, Any],
    event_type: str,
    reason: str,
    message: str,
    now: str,
    name: str | None = None,
) -> bool:
    """A core/v1 Event about ``involved`` (an object with apiVersion, kind and metadata).

    With ``name`` the Event is created under that name, once: False when it exists already.
    """
    metadata = involved["metadata"]
    naming = {"name": name} if name else {"generateName": f"{metadata['name']}."}
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**naming, "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": OPERATOR_FIELD_MANAGER},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        create(client, event)
    except ApiException as error:
        if name and error.status == 409:
            return False
        raise
    return True
