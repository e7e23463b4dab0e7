"""Reads the controller needs: references, live children, the server version."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from .apply import KINDS, ApiException, request
from .client import Client


def get(client: Client, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One object as a dict; None when it does not exist."""
    try:
        return request(client, "GET", KINDS[kind].path(namespace, name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def revision(obj: Mapping[str, Any] | None) -> int | None:
    """An object's resourceVersion as a number (etcd's revision: later writes are larger);
    None when absent or not numeric (another storage), so callers cannot compare it."""
    rv = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else None


def get_governed_agent(client: Client, namespace: str, name: str) -> dict[str, Any] | None:
    """A GovernedAgent, or None."""
    return get(client, "GovernedAgent", namespace, name)


def get_policy(client: Client, namespace: str, name: str) -> dict[str, Any] | None:
    """A GovernancePolicy, or None."""
    return get(client, "GovernancePolicy", namespace, name)


def alert_sink_exists(client: Client, namespace: str, name: str) -> bool:
    """Whether an AlertSink exists."""
    return get(client, "AlertSink", namespace, name) is not None


def secret_keys(client: Client, namespace: str, name: str) -> frozenset[str] | None:
    """The data keys of a Secret (never its values); None when it does not exist."""
    secret = get(client, "Secret", namespace, name)
    if secret is None:
        return None
    return frozenset((secret.get("data") or {}).keys()) | frozenset(
        (secret.get("stringData") or {}).keys()
    )


def secret_value(client: Client, namespace: str, name: str, key: str) -> str | None:
    """One value of a Secret, decoded (for a person's own tooling, e.g. a Compose bundle's
    key file; never logged); None when the Secret or the key does not exist."""
    secret = get(client, "Secret", namespace, name)
    encoded = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(encoded).decode() if encoded is not None else None


def server_minor_version(client: Client) -> int:
    """The API server's minor version (``"37+"`` and similar suffixes are ignored)."""
    version = request(client, "GET", "/version")
    match = re.match(r"\d+", str(version.get("minor", "")))
    return int(match.group()) if match else 0


def list_objects(
    client: Client,
    kind: str,
    namespace: str | None,
    label_selector: str = "",
) -> tuple[list[dict[str, Any]], str]:
    """Every object of a kind in a namespace (all when None), optionally labelled.

    Returns the items and the list's resourceVersion (to watch from).
    """
    query = [("labelSelector", label_selector)] if label_selector else []
    result = request(client, "GET", KINDS[kind].path(namespace), query=query)
    items: list[dict[str, Any]] = list(result.get("items") or [])
    return items, str((result.get("metadata") or {}).get("resourceVersion") or "")


def list_governed_agents(client: Client, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every GovernedAgent in the given namespaces (all namespaces when empty)."""
    if not namespaces:
        return list_objects(client, "GovernedAgent", None)[0]
    agents: list[dict[str, Any]] = []
    for namespace in namespaces:
        agents += list_objects(client, "GovernedAgent", namespace)[0]
    return agents


def connection_facts(client: Client) -> dict[str, Any]:
    """How ``client`` reaches the API server, for handing the same identity to kopf."""
    config = client.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return {
        "server": config.host,
        "ca_path": config.ssl_ca_cert,
        "insecure": not config.verify_ssl,
        "scheme": scheme,
        "token": token,
        "certificate_path": config.cert_file,
        "private_key_path": config.key_file,
    }
