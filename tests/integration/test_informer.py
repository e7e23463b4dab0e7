"""The operator's lean informer (:mod:`promethios.kube.informer`) against a real API server:
paginated listing, the label selector, namespace scope, events in order, a re-list after
a gap, and a prompt stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kube_helpers import wait_for

from promethios.controller.informed import Feed, Store
from promethios.kube import apply as kapply
from promethios.kube import informer

MANAGED = {"app.kubernetes.io/managed-by": "promethios-operator"}
SELECTOR = "app.kubernetes.io/managed-by=promethios-operator"


def put_config_map(
    client: Any, namespace: str, name: str, labels: dict[str, str], value: str = "1"
) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "data": {"v": value},
    }
    kapply.apply(client, manifest, field_manager="informer-test")


def delete_config_map(client: Any, namespace: str, name: str) -> None:
    kapply.request(client, "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}")


@dataclass
class Recorded:
    """A feed over a store, recording the events it passes on."""

    store: Store = field(default_factory=lambda: Store("ConfigMap"))
    events: list[tuple[str, str, str]] = field(default_factory=list)
    synced: threading.Event = field(default_factory=threading.Event)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.feed = Feed(self.store, self.emit, self.synced.set)

    def emit(self, type_: str, body: dict[str, Any]) -> None:
        with self.guard:
            self.events.append((type_, body["metadata"]["name"], (body.get("data") or {})["v"]))

    def seen(self) -> list[tuple[str, str, str]]:
        with self.guard:
            return list(self.events)

    def names(self) -> set[str]:
        return {name for _, name in self.store.known()}


@dataclass
class Running:
    recorded: Recorded
    stopper: informer.Stopper
    thread: threading.Thread


@pytest.fixture
def seeded(api_client: Any, namespace: str) -> str:
    for i in range(7):
        put_config_map(api_client, namespace, f"cm-{i}", MANAGED)
    put_config_map(api_client, namespace, "unmanaged", {})
    return namespace


@pytest.fixture
def running(api_client: Any, seeded: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    monkeypatch.setattr(informer, "PAGE", 3)  # the listing comes in three pages
    recorded, stopper = Recorded(), informer.Stopper()
    thread = threading.Thread(
        target=informer.inform,
        args=(api_client, "ConfigMap", seeded, SELECTOR, recorded.feed, stopper),
        daemon=True,
    )
    thread.start()
    try:
        yield Running(recorded, stopper, thread)
    finally:
        stopper.stop()
        thread.join(15)


def test_a_listing_comes_in_pages_of_the_selected_objects(api_client: Any, seeded: str) -> None:
    pages = list(informer.list_pages(api_client, "ConfigMap", seeded, SELECTOR, limit=3))
    items = [page for page in pages if isinstance(page, list)]
    assert [len(page) for page in items] == [3, 3, 1]
    assert isinstance(pages[-1], str) and pages[-1].isdigit()  # the version to watch from
    names = sorted(item["metadata"]["name"] for page in items for item in page)
    assert names == [f"cm-{i}" for i in range(7)]
    # As a watch event or a GET gives them (lists drop both): compared with what is applied.
    assert {(item["apiVersion"], item["kind"]) for page in items for item in page} == {
        ("v1", "ConfigMap")
    }


def test_changes_arrive_in_order_after_a_silent_listing(
    api_client: Any, running: Running, seeded: str
) -> None:
    recorded = running.recorded
    assert recorded.synced.wait(30)
    assert recorded.names() == {f"cm-{i}" for i in range(7)} and recorded.seen() == []
    put_config_map(api_client, seeded, "cm-0", MANAGED, value="2")
    put_config_map(api_client, seeded, "cm-0", MANAGED, value="3")
    put_config_map(api_client, seeded, "unmanaged", {}, value="2")  # not selected
    put_config_map(api_client, seeded, "cm-new", MANAGED)
    delete_config_map(api_client, seeded, "cm-1")
    wait_for(lambda: len(recorded.seen()) >= 4, what="four events", timeout=30)
    assert recorded.seen() == [
        ("MODIFIED", "cm-0", "2"),
        ("MODIFIED", "cm-0", "3"),
        ("ADDED", "cm-new", "1"),
        ("DELETED", "cm-1", "1"),
    ]
    assert recorded.names() == {f"cm-{i}" for i in (0, 2, 3, 4, 5, 6)} | {"cm-new"}


def test_a_relist_after_a_gap_passes_on_what_changed(api_client: Any, seeded: str) -> None:
    recorded = Recorded()
    informer._list_into(api_client, "ConfigMap", seeded, SELECTOR, recorded.feed)
    assert recorded.synced.is_set() and recorded.seen() == []
    put_config_map(api_client, seeded, "cm-2", MANAGED, value="9")
    delete_config_map(api_client, seeded, "cm-3")
    put_config_map(api_client, seeded, "cm-late", MANAGED)
    informer._list_into(api_client, "ConfigMap", seeded, SELECTOR, recorded.feed)
    assert sorted(recorded.seen()) == [
        ("ADDED", "cm-late", "1"),
        ("DELETED", "cm-3", "1"),
        ("MODIFIED", "cm-2", "9"),
    ]


def test_objects_of_another_namespace_are_not_seen(
    api_client: Any, running: Running, seeded: str
) -> None:
    assert running.recorded.synced.wait(30)
    other = f"{seeded}-x"[:63]
    kapply.request(api_client, "POST", "/api/v1/namespaces", body={"metadata": {"name": other}})
    try:
        put_config_map(api_client, other, "cm-0", MANAGED, value="other")
        put_config_map(api_client, seeded, "marker", MANAGED)
        wait_for(lambda: running.recorded.seen(), what="the marker's event", timeout=30)
        assert running.recorded.seen() == [("ADDED", "marker", "1")]
    finally:
        kapply.request(api_client, "DELETE", f"/api/v1/namespaces/{other}")


def test_stop_cuts_an_open_watch_at_once(running: Running) -> None:
    assert running.recorded.synced.wait(30)
    # The watch request is open (its window is a minute long) once the listing is done.
    wait_for(lambda: running.stopper._open is not None, what="the watch to open", timeout=10)
    started = time.monotonic()
    running.stopper.stop()
    running.thread.join(10)
    assert not running.thread.is_alive()
    assert time.monotonic() - started < 5
