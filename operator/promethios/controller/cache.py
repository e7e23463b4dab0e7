"""Watch-fed copies of the agents and their children, so that a reconcile sends no GETs.

A kopf index holds the agents, the operator's informers (:mod:`.informers`) the children;
each holds the objects of its kind by (namespace, name), packed (JSON, compressed, without
``managedFields``) so that 10,000 agents' children fit in little memory. kopf fills every
index from its initial listing before it runs any handler, an informer its store before it
reports its listing complete, so an object missing from either does not exist.

Until kopf has run its first handler and every informer has listed
(:meth:`ObjectCache.mark_ready`), the indexes may be half-filled and every read says
:class:`Unavailable`: the periodic resync and timers, which run in their own threads, then
read with GETs.

A watch event arrives after the write that caused it, so the cache also keeps what this
operator wrote itself (the API server's answer to each write) and answers with whichever
copy is newer by ``resourceVersion``: a reconcile right after a write does not plan that
write again. Deletions leave a tombstone until the watch catches up. An own copy the
index does not hold at all after :data:`MAX_AGE` (the object was deleted meanwhile) is
dropped, so the overlay stays small; one the index holds an older copy of is kept however
long the watch lags (under load, kopf's queues can hold events for minutes).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: (kind, namespace, name) of a cached object.
Key = tuple[str, str, str]

#: Looks one object up in a watch-fed index: its packed body, or None when absent.
#: Raises :class:`Unavailable` when the index cannot answer now (then ask the API server).
Lookup = Callable[[str, str, str], bytes | None]

#: Lists the (namespace, name, packed body) of every object of a kind in the index.
Listing = Callable[[str], Iterator[tuple[str, str, bytes]]]


#: Seconds an own write is kept while the index holds no copy of the object at all.
MAX_AGE = 60.0


class Unavailable(RuntimeError):
    """The index cannot be read at the moment (e.g. it changed while being read)."""


def pack(body: Mapping[str, Any]) -> bytes:
    """A compact copy of an object: without managedFields (the largest part, never used)."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    trimmed = {**body, "metadata": metadata}
    return zlib.compress(json.dumps(trimmed, separators=(",", ":")).encode(), 1)


def unpack(data: bytes) -> dict[str, Any]:
    """The object :func:`pack` stored (a fresh dict: callers may keep or change it)."""
    body: dict[str, Any] = json.loads(zlib.decompress(data))
    return body


def revision_of(body: Mapping[str, Any] | None) -> int:
    """An object's resourceVersion as a number; -1 when absent or not numeric."""
    rv = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else -1


@dataclass
class _Written:
    """What this operator last wrote to one object: its revision and body (None: deleted)."""

    revision: int
    body: bytes | None
    at: float


@dataclass
class ObjectCache:
    """Objects by kind from watch-fed indexes, overlaid with this operator's own writes."""

    lookup: Lookup
    listing: Listing
    clock: Callable[[], float] = time.monotonic
    ready: threading.Event = field(default_factory=threading.Event)
    #: What must be complete before the cache answers (kopf's indexes, the informers).
    awaiting: set[str] = field(default_factory=lambda: {"kopf"})
    _written: dict[Key, _Written] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def mark_ready(self, part: str = "kopf") -> None:
        """``part`` holds every object (kopf runs handlers only once its indexes do; an
        informer, once its first listing is complete); ready when every part is."""
        with self._guard:
            self.awaiting.discard(part)
            complete = not self.awaiting
        if complete:
            self.ready.set()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest copy known of an object; None when it does not exist.

        Raises :class:`Unavailable` when the index cannot answer (the caller GETs instead).
        """
        if not self.ready.is_set():
            raise Unavailable("the watches' initial listings are not complete")
        key = (kind, namespace, name)
        packed = self.lookup(kind, namespace, name)
        watched = unpack(packed) if packed is not None else None
        with self._guard:
            mine = self._written.get(key)
            if mine is not None and watched is None and self.clock() - mine.at > MAX_AGE:
                del self._written[key]  # gone from the index for long: deleted since
                mine = None
            if mine is None:
                return watched
            seen = revision_of(watched) if watched is not None else None
            caught_up = seen is not None and (
                seen > mine.revision or (seen == mine.revision and mine.body is not None)
            )
            if caught_up or (watched is None and mine.body is None):
                del self._written[key]  # the watch has caught up (or someone wrote since)
                return watched
        return unpack(mine.body) if mine.body is not None else None

    def wrote(self, kind: str, body: Mapping[str, Any]) -> None:
        """Remember the API server's answer to a write (an apply, a patch, a status)."""
        metadata = body.get("metadata") or {}
        key = (kind, metadata.get("namespace") or "", metadata.get("name") or "")
        revision = revision_of(body)
        if revision < 0 or not key[2]:
            return
        with self._guard:
            previous = self._written.get(key)
            if previous is None or previous.revision <= revision:
                self._written[key] = _Written(revision, pack(body), self.clock())

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        """Remember a deletion: copies no newer than the deleted one count as gone."""
        key = (kind, namespace, name)
        try:
            last = self.get(kind, namespace, name)
        except Unavailable:
            last = None
        with self._guard:
            self._written[key] = _Written(revision_of(last), None, self.clock())

    def names(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every object of ``kind`` the index holds (sorted)."""
        if not self.ready.is_set():
            raise Unavailable("the watches' initial listings are not complete")
        return sorted((ns, name) for ns, name, _ in self.listing(kind))

    def pending(self) -> int:
        """How many own writes the watches have not confirmed yet (each is checked)."""
        with self._guard:
            keys = list(self._written)
        for kind, namespace, name in keys:
            with contextlib.suppress(Unavailable):
                self.get(kind, namespace, name)  # drops what is confirmed or too old
        with self._guard:
            return len(self._written)
