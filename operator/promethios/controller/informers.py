"""The operator's own informers: the children and all Secrets, watched without kopf.

kopf keeps a worker task, a stream and a memory record per object of every kind it
watches; for the children of 10,000 agents (and every Secret) that was most of the
operator's memory. kopf now watches the GovernedAgents, GovernancePolicies and
AlertSinks only; :class:`Informers` lists and watches the rest
(:func:`..kube.informer.inform`, one thread per kind and namespace scope) into
:class:`~.informed.Store` s that feed the :class:`~.cache.ObjectCache` and the index of
Secret data keys, and hands the events that matter (:func:`.childevents.decide`) to a
small pool of workers (:class:`~.workpool.KeyedWorkers`) running the handler logic.

Namespace scoping is kopf's: no namespaces, all of them; plain names, one informer per
name; patterns (globs, exclusions), all namespaces filtered by :func:`namespace_matches`,
kopf's documented pattern rules (kopf's own matcher is private; a unit test holds the two
equal).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..api.metadata import LABEL_MANAGED_BY, MANAGED_BY
from ..kube.client import Client, dedicated_client
from ..kube.informer import Stopper, inform
from .childevents import WATCHED, ChildEvent, Dispatch, decide
from .informed import Feed, Store
from .workpool import KeyedWorkers

log = logging.getLogger(__name__)

#: Label selector of the managed children (Secrets are all watched: references).
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
#: Threads carrying out the events' work (kopf ran the child handlers on 8 shared ones).
WORKERS = 4


@dataclass(frozen=True)
class Work:
    """One event to carry out: what it means, and its object when that is needed."""

    event: ChildEvent
    dispatch: Dispatch
    body: dict[str, Any] | None


def _same_sort(old: Work, new: Work) -> bool:
    """A waiting item superseded by a newer one of the same event type."""
    return old.event.type == new.event.type


def namespace_matches(namespace: str, pattern: str) -> bool:
    """Whether ``namespace`` is in a kopf namespace pattern: comma-separated globs read
    left to right; a ``!glob`` excludes; the first glob decides the initial match (a
    leading exclusion implies ``*`` before it), and a later inclusive glob only brings
    back a namespace the initial glob matched and an exclusion removed."""
    globs = [part.strip() for part in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    initial = fnmatch.fnmatch(namespace, globs[0])
    matched = initial
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatch.fnmatch(namespace, glob.lstrip("!"))
        elif initial and fnmatch.fnmatch(namespace, glob):
            matched = True
    return matched


@dataclass(frozen=True)
class Scope:
    """Where to list and watch, and which namespaces count (kopf's semantics)."""

    namespaces: tuple[str | None, ...]
    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: tuple[str, ...]) -> Scope:
        if not patterns:
            return cls((None,))
        if any(mark in p for p in patterns for mark in "!*?,"):
            return cls((None,), patterns)
        return cls(tuple(dict.fromkeys(patterns)))

    def admits(self, namespace: str) -> bool:
        if not self.patterns:
            return True
        return any(namespace_matches(namespace, p) for p in self.patterns)


def selector_for(kind: str) -> str:
    return "" if kind == "Secret" else MANAGED_SELECTOR


class Informers:
    """List-and-watch threads per kind and scope, their stores and the workers."""

    def __init__(
        self,
        client: Client,
        namespaces: tuple[str, ...],
        handle: Callable[[Work], None],
        workers: int = WORKERS,
    ) -> None:
        self.scope = Scope.of(namespaces)
        # One connection per informer (its watch), plus one for a re-list meanwhile.
        self.client = dedicated_client(client, len(WATCHED) * len(self.scope.namespaces) + 1)
        self.stores = {kind: Store(kind) for kind in WATCHED}
        #: Set once the cache answers (kopf's indexes filled, every listing complete):
        #: the work waits for it, as kopf's handlers waited for its indexes.
        self.ready = threading.Event()
        self.workers = KeyedWorkers[Work](
            handle, workers, self.ready, supersedes=_same_sort, name="promethios-child"
        )
        self._stoppers: list[Stopper] = []
        self._threads: list[threading.Thread] = []
        self._unsynced = {(k, ns) for k in WATCHED for ns in self.scope.namespaces}
        self._guard = threading.Lock()
        self._on_synced: Callable[[], None] = lambda: None

    def start(self, on_synced: Callable[[], None]) -> None:
        """Start every informer; ``on_synced`` runs once all first listings are complete."""
        self._on_synced = on_synced
        self.workers.start()
        for kind in WATCHED:
            for namespace in self.scope.namespaces:
                self._start_one(kind, namespace)

    def _start_one(self, kind: str, namespace: str | None) -> None:
        stopper = Stopper()
        feed = Feed(
            self.stores[kind],
            lambda type_, body: self._emit(kind, type_, body),
            lambda: self._synced(kind, namespace),
            accept=self._admits,
            namespace=namespace,
        )
        thread = threading.Thread(
            target=inform,
            args=(self.client, kind, namespace, selector_for(kind), feed, stopper),
            name=f"promethios-informer-{kind}-{namespace or 'all'}",
            daemon=True,
        )
        self._stoppers.append(stopper)
        self._threads.append(thread)
        thread.start()

    def _admits(self, body: dict[str, Any]) -> bool:
        return self.scope.admits(str((body.get("metadata") or {}).get("namespace") or ""))

    def _synced(self, kind: str, namespace: str | None) -> None:
        with self._guard:
            self._unsynced.discard((kind, namespace))
            complete = not self._unsynced
        if complete:
            log.info("informers: initial listings complete")
            self._on_synced()

    def _emit(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        event = ChildEvent.of(kind, type_, body)
        dispatch = decide(event)
        if not dispatch.nothing:
            work = Work(event, dispatch, body if dispatch.needs_body else None)
            self.workers.submit((kind, event.namespace, event.name), work)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the informers and the workers (running work finishes)."""
        for stopper in self._stoppers:
            stopper.stop()
        self.workers.stop(timeout)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self.client.close()

    def lookup(self, kind: str, namespace: str, name: str) -> bytes | None:
        """A managed child's packed body (the :class:`~.cache.ObjectCache`'s Lookup)."""
        return self.stores[kind].body(namespace, name)

    def listing(self, kind: str) -> Iterator[tuple[str, str, bytes]]:
        """Every managed child of a kind (the :class:`~.cache.ObjectCache`'s Listing)."""
        return self.stores[kind].bodies()
