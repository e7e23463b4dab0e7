"""The leader election's Lease (``coordination.k8s.io/v1``): read, create, replace.

Writes carry the resourceVersion the caller read; a stale one (another replica wrote
first) or a create that finds the Lease already there raise :class:`LeaseConflict`, so
the election (``controller/election.py``) simply reads again at its next try. Any other
refusal (no RBAC, no such namespace) is a :class:`LeaseError` naming status and reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .apply import KINDS, ApiException, request
from .client import Client


class LeaseConflict(Exception):
    """Another replica wrote the Lease first (HTTP 409)."""


class LeaseError(Exception):
    """The API server refused a Lease request; the message is its status and reason only
    (stable from one try to the next, so the election can say it once)."""


def _refused(method: str, path: str, error: ApiException) -> LeaseError:
    try:
        reason = json.loads(error.body or "{}").get("message") or error.reason
    except ValueError:
        reason = error.reason
    return LeaseError(f"{method} {path}: HTTP {error.status}: {reason}")


def read_lease(client: Client, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
    """The Lease; None when it does not exist."""
    path = KINDS["Lease"].path(namespace, name)
    try:
        return request(client, "GET", path, timeout=timeout)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _refused("GET", path, error) from None


def create_lease(client: Client, manifest: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Create the Lease; :class:`LeaseConflict` when it exists already."""
    namespace = manifest["metadata"]["namespace"]
    return _write(client, "POST", KINDS["Lease"].path(namespace), manifest, timeout)


def replace_lease(client: Client, manifest: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Replace the Lease under the manifest's resourceVersion; :class:`LeaseConflict` when
    it changed since."""
    metadata = manifest["metadata"]
    path = KINDS["Lease"].path(metadata["namespace"], metadata["name"])
    return _write(client, "PUT", path, manifest, timeout)


def _write(
    client: Client, method: str, path: str, manifest: Mapping[str, Any], timeout: float
) -> dict[str, Any]:
    try:
        return request(client, method, path, body=dict(manifest), timeout=timeout)
    except ApiException as error:
        if error.status == 409:
            raise LeaseConflict(f"Lease {path}: changed by another replica") from None
        raise _refused(method, path, error) from None
