"""The leader election's Lease (``coordination.k8s.io/v1``): read, create, replace.

Writes carry the resourceVersion the caller read; a stale one (another replica wrote
first) or a create that finds the Lease already there raise :class:`LeaseConflict`, so
the election (``controller/election.py``) simply reads again at its next try.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .apply import KINDS, ApiException, request
from .client import Client


class LeaseConflict(Exception):
    """Another replica wrote the Lease first (HTTP 409)."""


def read_lease(client: Client, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
    """The Lease; None when it does not exist."""
    try:
        return request(client, "GET", KINDS["Lease"].path(namespace, name), timeout=timeout)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


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
        raise
