"""A lean list-and-watch of one kind: paginated lists, bookmarks, a re-list on 410.

The operator's children (and all Secrets, for references) are watched by
:func:`inform` rather than by kopf, which keeps a worker task, a stream and a memory
record per watched object. :func:`inform` runs in a thread of its own and hands what it
sees to a :class:`Sink`:

- the listing, page by page (``limit`` items a page, so 50,000 objects never sit in
  memory at once): ``begin`` … ``listed`` per item … ``end`` (the sink drops what the
  listing did not hold);
- then each watch event (``ADDED``, ``MODIFIED``, ``DELETED``) from the listing's
  resourceVersion, with bookmarks keeping that version current, in windows of
  :data:`WINDOW_SECONDS` resumed from the last version seen;
- a watch that expired (410 Gone) or failed starts over with a listing.

Only GET ``list`` and ``watch`` requests are sent: the same verbs kopf used.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from .apply import KINDS, ApiException, request
from .client import Client

log = logging.getLogger(__name__)

#: Items per page of a listing.
PAGE = 500
#: Seconds a watch request stays open before it is resumed (server side timeout).
WINDOW_SECONDS = 60
#: Seconds to wait before listing again after a failure.
BACKOFF_SECONDS = 2.0


class Expired(Exception):
    """The resourceVersion to list or watch from is too old (410 Gone): list anew."""


class Sink(Protocol):
    """Receives what :func:`inform` sees of one kind in one scope."""

    def begin(self) -> None:
        """A listing starts (the first, or a re-list after an expired watch)."""

    def listed(self, item: dict[str, Any]) -> None:
        """One object of the listing (pages arrive in order)."""

    def end(self) -> None:
        """The listing is complete: objects it did not hold are gone."""

    def event(self, kind: str, item: dict[str, Any]) -> None:
        """One watch event: ``ADDED``, ``MODIFIED`` or ``DELETED``."""


class Stopper:
    """Stops an informer: sets the event and cuts the watch request open at that moment."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._open: Any = None
        self._guard = threading.Lock()

    def holding(self, response: Any) -> None:
        with self._guard:
            self._open = response

    def stop(self) -> None:
        self.stopped.set()
        with self._guard:
            response = self._open
        if response is not None:
            try:
                response.shutdown()  # wakes the thread blocked reading the watch
            except Exception as error:  # already released or closed: nothing is blocked
                log.debug("watch not shut down: %s", error)


def _query(selector: str, **more: str) -> list[tuple[str, str]]:
    query = [("labelSelector", selector)] if selector else []
    return query + [(key, value) for key, value in more.items() if value]


def list_pages(
    client: Client, kind: str, namespace: str | None, selector: str, limit: int = PAGE
) -> Iterator[list[dict[str, Any]] | str]:
    """Yield each page's items, then the listing's resourceVersion (a str) last.

    Raises :class:`Expired` when a continue token expired mid-listing (list anew).
    """
    token = ""
    path = KINDS[kind].path(namespace)
    while True:
        query = _query(selector, limit=str(limit), **{"continue": token})
        try:
            page = request(client, "GET", path, query=query)
        except ApiException as error:
            if error.status == 410:
                raise Expired(str(error.reason)) from error
            raise
        items: list[dict[str, Any]] = list(page.get("items") or [])
        for item in items:  # lists drop each item's kind and apiVersion
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", KINDS[kind].api_version)
        yield items
        metadata = page.get("metadata") or {}
        token = str(metadata.get("continue") or "")
        if not token:
            yield str(metadata.get("resourceVersion") or "")
            return


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated JSON events of a watch response, as they arrive."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def watch_events(
    client: Client,
    kind: str,
    namespace: str | None,
    selector: str,
    version: str,
    stopper: Stopper,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One watch window's events (``BOOKMARK`` included) from ``version``.

    Raises :class:`Expired` on 410 Gone (an ERROR event or the response status).
    """
    query = _query(
        selector,
        watch="true",
        allowWatchBookmarks="true",
        resourceVersion=version,
        timeoutSeconds=str(WINDOW_SECONDS),
    )
    serialized = client.param_serialize(
        "GET",
        KINDS[kind].path(namespace),
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = client.call_api(*serialized, _request_timeout=(10, WINDOW_SECONDS + 15)).response
    stopper.holding(response)
    try:
        if response.status == 410:
            raise Expired("watch: 410 Gone")
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=str(response.reason))
        for line in _lines(response):
            if stopper.stopped.is_set():
                return
            event = json.loads(line)
            kind_of_event, item = str(event.get("type") or ""), event.get("object") or {}
            if kind_of_event == "ERROR":
                code = item.get("code")
                raise (
                    Expired(str(item.get("message")))
                    if code == 410
                    else RuntimeError(f"watch error {code}: {item.get('message')}")
                )
            item.setdefault("kind", kind)
            yield kind_of_event, item
    finally:
        stopper.holding(None)
        response.release_conn()


def _list_into(client: Client, kind: str, namespace: str | None, selector: str, sink: Sink) -> str:
    """List page by page into ``sink``; the resourceVersion to watch from."""
    sink.begin()
    version = ""
    for page in list_pages(client, kind, namespace, selector):
        if isinstance(page, str):
            version = page
        else:
            for item in page:
                sink.listed(item)
    sink.end()
    return version


def _watch_into(
    client: Client,
    kind: str,
    namespace: str | None,
    selector: str,
    version: str,
    sink: Sink,
    stopper: Stopper,
) -> None:
    """Watch window after window from ``version`` until stopped (or expired: raises)."""
    while not stopper.stopped.is_set():
        for kind_of_event, item in watch_events(
            client, kind, namespace, selector, version, stopper
        ):
            version = str((item.get("metadata") or {}).get("resourceVersion") or version)
            if kind_of_event != "BOOKMARK":
                sink.event(kind_of_event, item)


def inform(
    client: Client,
    kind: str,
    namespace: str | None,
    selector: str,
    sink: Sink,
    stopper: Stopper,
) -> None:
    """List, then watch, ``kind`` in ``namespace`` (all when None) until stopped."""
    where = namespace or "all namespaces"
    while not stopper.stopped.is_set():
        try:
            version = _list_into(client, kind, namespace, selector, sink)
            _watch_into(client, kind, namespace, selector, version, sink, stopper)
        except Expired as error:
            log.info("watch of %s in %s expired (%s): listing again", kind, where, error)
        except Exception as error:  # network or API error: back off, then list again
            if stopper.stopped.is_set():
                return
            log.warning("watch of %s in %s failed: %s", kind, where, error)
            stopper.stopped.wait(BACKOFF_SECONDS)
