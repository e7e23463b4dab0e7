"""What feeds :class:`~promethios.controller.cache.ObjectCache`: kopf's index of the agents,
the operator's informers for the children.

The GovernedAgents come from one kopf index (kopf watches them anyway, for the
handlers); their managed children (Secret, ConfigMap, Deployment, Service,
NetworkPolicy) from the stores of :class:`~.informers.Informers`. A startup handler
(:mod:`.handlers`) builds the cache and hands it to the shared context: the periodic
resync and the scheduled reconciles, which have no handler arguments, read through it too.
The cache answers once kopf has run its first handler *and* every informer has listed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from ..api.common import GROUP, VERSION
from .cache import ObjectCache, Unavailable, pack
from .informers import Informers

AGENTS_INDEX = "cached_agents"
#: The parts the cache waits for (see :meth:`ObjectCache.mark_ready`).
KOPF, INFORMERS = "kopf", "informers"

ObjectKey = tuple[str, str]


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the index of the agents (every one, packed)."""

    # Async: kopf runs it on its event loop (packing takes tens of microseconds),
    # not in the thread pool the reconciles need.
    @kopf.index(GROUP, VERSION, "governedagents", registry=registry, id=AGENTS_INDEX)
    async def index(
        *, body: kopf.Body, namespace: str | None, name: str | None, **_: Any
    ) -> dict[ObjectKey, bytes]:
        return {(namespace or "", name or ""): pack(body)}


def cache_from(indexes: Mapping[str, Any], informers: Informers) -> ObjectCache:
    """An :class:`ObjectCache` reading the agents' kopf index (in ``indexes``, handler
    kwargs) and the informers' stores; not ready until both parts are."""
    agents: kopf.Index[ObjectKey, bytes] = indexes[AGENTS_INDEX]

    def lookup(kind: str, namespace: str, name: str) -> bytes | None:
        if kind != "GovernedAgent":
            return informers.lookup(kind, namespace, name)
        try:
            return next(iter(agents.get((namespace, name), ())), None)
        except RuntimeError as error:  # changed by the event loop while read here
            raise Unavailable(str(error)) from error

    def listing(kind: str) -> Iterator[tuple[str, str, bytes]]:
        if kind != "GovernedAgent":
            return informers.listing(kind)
        try:
            entries = [(key, next(iter(store), None)) for key, store in agents.items()]
        except RuntimeError as error:
            raise Unavailable(str(error)) from error
        return iter([(ns, name, body) for (ns, name), body in entries if body is not None])

    return ObjectCache(lookup, listing, ready=informers.ready, awaiting={KOPF, INFORMERS})
