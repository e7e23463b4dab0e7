"""What the informers keep of each watched kind, and the events they pass on.

A :class:`Store` holds one kind's objects by (namespace, name), each as little as the
operator needs: a managed child's body packed (:func:`.cache.pack`, for the
:class:`~.cache.ObjectCache`), another Secret's data keys only (the references index),
a Pod nothing but its revision. A :class:`Feed` is the :class:`~..kube.informer.Sink`
filling a store: the first listing fills it silently (kopf passed no events for an
initial listing either); a later listing (after an expired watch) passes on the
differences it finds as events, and every watch event is passed on once stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .cache import pack, revision_of, unpack
from .childevents import keeps_body, secret_keys

ObjectKey = tuple[str, str]
#: What is kept of one object: a packed body, a Secret's data keys, or nothing.
Kept = bytes | frozenset[str] | None
#: Receives (event type, object) of one kind.
Emit = Callable[[str, dict[str, Any]], None]


def key_of(body: Mapping[str, Any]) -> ObjectKey:
    metadata = body.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def kept_of(kind: str, body: Mapping[str, Any]) -> Kept:
    """What a store keeps of an object (see the module docstring)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if keeps_body(kind, labels):
        return pack(body)
    return secret_keys(body) if kind == "Secret" else None


class Store:
    """One kind's objects by (namespace, name): (revision, what is kept)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[ObjectKey, tuple[int, Kept]] = {}
        self._guard = threading.Lock()

    def put(self, body: Mapping[str, Any]) -> int | None:
        """Store an object; the revision it replaced (None: it was not stored)."""
        entry = (revision_of(body), kept_of(self.kind, body))
        with self._guard:
            previous = self._entries.get(key_of(body))
            self._entries[key_of(body)] = entry
        return previous[0] if previous is not None else None

    def pop(self, key: ObjectKey) -> Kept | None:
        with self._guard:
            entry = self._entries.pop(key, None)
        return entry[1] if entry is not None else None

    def known(self, namespace: str | None = None) -> set[ObjectKey]:
        """The keys stored (of one namespace; of all when None)."""
        with self._guard:
            return {key for key in self._entries if namespace in (None, key[0])}

    def body(self, namespace: str, name: str) -> bytes | None:
        """A managed child's packed body; None when absent (or not kept)."""
        with self._guard:
            entry = self._entries.get((namespace, name))
        return entry[1] if entry is not None and isinstance(entry[1], bytes) else None

    def bodies(self) -> Iterator[tuple[str, str, bytes]]:
        """(namespace, name, packed body) of every managed child (a snapshot)."""
        with self._guard:
            items = list(self._entries.items())
        return iter(
            [(ns, name, kept) for (ns, name), (_, kept) in items if isinstance(kept, bytes)]
        )

    def get(self, key: ObjectKey, default: Any = ()) -> Any:
        """The data keys of a Secret that is not a managed child, as kopf's index gave them
        (an iterable of one value); ``default`` when there are none."""
        with self._guard:
            entry = self._entries.get(key)
        kept = entry[1] if entry is not None else None
        return (kept,) if isinstance(kept, frozenset) else default


class Feed:
    """Fills a :class:`Store` from an informer (the objects ``accept`` admits: the
    operator's namespaces); passes events on to ``emit``."""

    def __init__(
        self,
        store: Store,
        emit: Emit,
        on_synced: Callable[[], None],
        accept: Callable[[dict[str, Any]], bool] = lambda _: True,
        namespace: str | None = None,
    ) -> None:
        self.store, self.emit, self.on_synced, self.accept = store, emit, on_synced, accept
        #: The namespace listed (None: all): a listing drops what it lacks of this one only,
        #: the store being shared by the informers of one kind in several namespaces.
        self.namespace = namespace
        self.synced = False
        self._listed: set[ObjectKey] = set()

    def begin(self) -> None:
        self._listed = set()

    def listed(self, item: dict[str, Any]) -> None:
        if not self.accept(item):
            return
        key = key_of(item)
        self._listed.add(key)
        previous = self.store.put(item)
        if not self.synced and previous is None:
            return  # the first listing: silent
        if previous is None:
            self.emit("ADDED", item)
        elif previous != revision_of(item):
            self.emit("MODIFIED", item)

    def end(self) -> None:
        for key in self.store.known(self.namespace) - self._listed:
            kept = self.store.pop(key)
            if self.synced:
                self.emit("DELETED", _last_known(key, kept))
        self._listed = set()
        if not self.synced:
            self.synced = True
            self.on_synced()

    def event(self, kind: str, item: dict[str, Any]) -> None:
        if not self.accept(item):
            return
        if kind == "DELETED":
            self.store.pop(key_of(item))
        elif kind in ("ADDED", "MODIFIED"):
            self.store.put(item)
        else:
            return
        self.emit(kind, item)


def _last_known(key: ObjectKey, kept: Kept | None) -> dict[str, Any]:
    """An object found gone by a re-list: its last packed body, else its key alone."""
    if isinstance(kept, bytes):
        return unpack(kept)
    return {"metadata": {"namespace": key[0], "name": key[1]}}
