"""Node readiness predicates and the errors the launcher's waits and kubectl raise."""

from __future__ import annotations

import subprocess
import urllib.request
from typing import Any

from .api import ApiError, RestClient

NO_SCHEDULE_EFFECTS = {"NoSchedule", "NoExecute"}


class NotReadyYet(Exception):
    """Raised by a readiness predicate to say what it is still waiting for."""


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` exited non-zero; the message carries its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr or ''}".rstrip()


def node_is_ready(node: dict[str, Any]) -> bool:
    """The node's Ready condition is True."""
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_is_usable(node: dict[str, Any]) -> bool:
    """Ready=True and no NoSchedule/NoExecute taint (so ordinary pods can land on it)."""
    taints = node.get("spec", {}).get("taints") or []
    return node_is_ready(node) and not any(t.get("effect") in NO_SCHEDULE_EFFECTS for t in taints)


def describe_node(node: dict[str, Any]) -> str:
    """``name Ready=<status> taints=[...]``, for error messages."""
    conditions = node.get("status", {}).get("conditions") or []
    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "absent")
    taints = [f"{t.get('key')}:{t.get('effect')}" for t in node.get("spec", {}).get("taints") or []]
    return f"{node['metadata']['name']} Ready={ready} taints={taints}"


def etcd_healthy(url: str) -> bool:
    """etcd's ``/health`` at ``url`` says it is healthy."""
    with urllib.request.urlopen(url, timeout=2.0) as response:
        return b'"health":"true"' in response.read()


def default_service_account_exists(api: RestClient) -> bool:
    """The ``default`` ServiceAccount of namespace ``default`` exists (the controller
    manager's service-account controller has run)."""
    try:
        api.get("/api/v1/namespaces/default/serviceaccounts/default")
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    return True
