"""kopf indexes that feed :class:`~promethios.controller.cache.ObjectCache`.

One index per kind the reconcile reads: the GovernedAgents and their managed children
(Secret, ConfigMap, Deployment, Service, NetworkPolicy). kopf fills every index from its
initial listing before it runs any handler, and keeps it current from the same watches it
already holds for the handlers (one more watch, for NetworkPolicies). A startup handler
(:mod:`.handlers`) hands the indexes to the shared context: the periodic resync and the
scheduled reconciles, which have no handler arguments, read through them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from ..api.common import GROUP, VERSION
from ..api.metadata import LABEL_MANAGED_BY, MANAGED_BY
from .cache import ObjectCache, Unavailable, pack

MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}

#: The index id for each cached kind, and the resource kopf watches for it.
CACHED: dict[str, tuple[str, tuple[str, str, str]]] = {
    "GovernedAgent": ("cached_agents", (GROUP, VERSION, "governedagents")),
    "Secret": ("cached_secrets", ("", "v1", "secrets")),
    "ConfigMap": ("cached_config_maps", ("", "v1", "configmaps")),
    "Deployment": ("cached_deployments", ("apps", "v1", "deployments")),
    "Service": ("cached_services", ("", "v1", "services")),
    "NetworkPolicy": ("cached_network_policies", ("networking.k8s.io", "v1", "networkpolicies")),
}

ObjectKey = tuple[str, str]


def _packed(body: kopf.Body, namespace: str | None, name: str | None) -> dict[ObjectKey, bytes]:
    return {(namespace or "", name or ""): pack(body)}


def register(registry: kopf.OperatorRegistry) -> None:
    """Register one index per cached kind (agents: all; children: the managed ones)."""
    for kind, (index_id, resource) in CACHED.items():
        labels = None if kind == "GovernedAgent" else MANAGED

        # Async: kopf runs it on its event loop (packing takes tens of microseconds),
        # not in the thread pool the reconciles need for every event of six kinds.
        async def index(
            *, body: kopf.Body, namespace: str | None, name: str | None, **_: Any
        ) -> dict[ObjectKey, bytes]:
            return _packed(body, namespace, name)

        kopf.index(*resource, labels=labels, registry=registry, id=index_id)(index)


def cache_from(indexes: Mapping[str, Any]) -> ObjectCache:
    """An :class:`ObjectCache` reading the kopf indexes in ``indexes`` (handler kwargs)."""
    by_kind: dict[str, kopf.Index[ObjectKey, bytes]] = {
        kind: indexes[index_id] for kind, (index_id, _) in CACHED.items()
    }

    def lookup(kind: str, namespace: str, name: str) -> bytes | None:
        try:
            return next(iter(by_kind[kind].get((namespace, name), ())), None)
        except RuntimeError as error:  # changed by the event loop while read here
            raise Unavailable(str(error)) from error

    def listing(kind: str) -> Iterator[tuple[str, str, bytes]]:
        try:
            entries = [(key, next(iter(store), None)) for key, store in by_kind[kind].items()]
        except RuntimeError as error:
            raise Unavailable(str(error)) from error
        return iter([(ns, name, body) for (ns, name), body in entries if body is not None])

    return ObjectCache(lookup, listing)
