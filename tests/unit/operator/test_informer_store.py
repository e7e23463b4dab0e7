"""The informers' stores and feeds (:mod:`promethios.controller.informed`), their namespace
scoping, and when the object cache they feed may answer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# kopf's own matcher is private API: this is where a kopf upgrade that reads patterns
# differently would show (the informers would then watch other namespaces than kopf).
from kopf._cogs.structs.references import NamespaceName, match_namespace

from promethios.controller.cache import ObjectCache, Unavailable, unpack
from promethios.controller.informed import Feed, Store
from promethios.controller.informers import Scope, namespace_matches

MANAGED = {"app.kubernetes.io/managed-by": "promethios-operator"}


def obj(name: str, rv: int, ns: str = "team-a", **more: Any) -> dict[str, Any]:
    metadata = {"namespace": ns, "name": name, "resourceVersion": str(rv), "labels": MANAGED}
    return {"kind": "ConfigMap", "metadata": metadata, **more}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.synced = 0

    def emit(self, type_: str, body: dict[str, Any]) -> None:
        self.events.append((type_, body["metadata"]["name"]))
        self.bodies.append(body)

    def on_synced(self) -> None:
        self.synced += 1


def listing(feed: Feed, *items: dict[str, Any]) -> None:
    feed.begin()
    for item in items:
        feed.listed(item)
    feed.end()


@pytest.fixture
def fed() -> tuple[Feed, Store, Recorder]:
    store, recorder = Store("ConfigMap"), Recorder()
    return Feed(store, recorder.emit, recorder.on_synced), store, recorder


def test_the_first_listing_fills_the_store_silently_and_reports_sync_once(
    fed: tuple[Feed, Store, Recorder],
) -> None:
    feed, store, recorder = fed
    listing(feed, obj("a", 1), obj("b", 2))
    assert recorder.events == [] and recorder.synced == 1
    assert store.known() == {("team-a", "a"), ("team-a", "b")}
    body = store.body("team-a", "a")
    assert body is not None and unpack(body)["metadata"]["name"] == "a"
    listing(feed, obj("a", 1), obj("b", 2))
    assert recorder.synced == 1  # a re-list does not report it again


def test_a_relist_passes_on_what_changed_meanwhile(fed: tuple[Feed, Store, Recorder]) -> None:
    feed, store, recorder = fed
    listing(feed, obj("same", 1), obj("changed", 2), obj("gone", 3, data={"k": "v"}))
    listing(feed, obj("same", 1), obj("changed", 9), obj("new", 10))
    assert sorted(recorder.events) == [
        ("ADDED", "new"),
        ("DELETED", "gone"),
        ("MODIFIED", "changed"),
    ]
    deleted = next(b for b in recorder.bodies if b["metadata"]["name"] == "gone")
    assert deleted["data"] == {"k": "v"}  # the last body known (labels: whose child it was)
    assert store.known() == {("team-a", "same"), ("team-a", "changed"), ("team-a", "new")}


def test_watch_events_update_the_store_before_they_are_passed_on(
    fed: tuple[Feed, Store, Recorder],
) -> None:
    feed, store, _ = fed
    listing(feed)
    seen_in_store: list[bool] = []
    feed.emit = lambda t, b: seen_in_store.append(store.body("team-a", "a") is not None)
    feed.event("ADDED", obj("a", 1))
    feed.event("MODIFIED", obj("a", 2))
    feed.event("DELETED", obj("a", 3))
    feed.event("BOOKMARK", obj("a", 4))
    assert seen_in_store == [True, True, False]
    assert store.known() == set()


def test_objects_outside_the_scope_are_neither_stored_nor_passed_on() -> None:
    store, recorder = Store("ConfigMap"), Recorder()
    feed = Feed(
        store,
        recorder.emit,
        recorder.on_synced,
        accept=lambda b: b["metadata"]["namespace"] == "in",
    )
    listing(feed, obj("a", 1, ns="in"), obj("b", 1, ns="out"))
    feed.event("ADDED", obj("c", 2, ns="out"))
    assert store.known() == {("in", "a")} and recorder.events == []


def test_a_pod_is_kept_as_its_revision_only() -> None:
    store = Store("Pod")
    store.put({"kind": "Pod", "metadata": {**obj("p", 4)["metadata"]}, "spec": {"x": 1}})
    assert store.known() == {("team-a", "p")}
    assert store.body("team-a", "p") is None and list(store.bodies()) == []


def test_namespace_scopes_follow_kopf() -> None:
    assert Scope.of(()).namespaces == (None,)
    plain = Scope.of(("a", "b", "a"))
    assert plain.namespaces == ("a", "b") and plain.admits("anything")
    globbed = Scope.of(("team-*, !team-x", "ops"))
    assert globbed.namespaces == (None,)  # listed everywhere, filtered by kopf's pattern rules
    assert globbed.admits("team-a") and globbed.admits("ops")
    assert not globbed.admits("team-x") and not globbed.admits("other")


@pytest.mark.parametrize(
    ("pattern", "inside", "outside"),
    [
        ("myapp-*, !*-pr-*, *pr-123", ["myapp-test", "myapp-pr-123"], ["myapp-pr-456", "x-pr-123"]),
        ("!*-pr-*, *pr-123", ["myapp-test", "x-pr-123", "any"], ["myapp-pr-456"]),
        ("team-?", ["team-a"], ["team-ab", "team-"]),
        ("!kube-*", ["default"], ["kube-system"]),
    ],
)
def test_namespace_patterns_read_as_kopf_documents_them(
    pattern: str, inside: list[str], outside: list[str]
) -> None:
    assert all(namespace_matches(ns, pattern) for ns in inside)
    assert not any(namespace_matches(ns, pattern) for ns in outside)


GLOB = st.text(alphabet="ab-*?!", min_size=0, max_size=4)


@settings(deadline=None)  # a busy machine must not fail a pure comparison
@given(
    namespace=st.text(alphabet="ab-", max_size=5),
    globs=st.lists(GLOB, min_size=1, max_size=4),
)
def test_namespace_patterns_match_exactly_what_kopf_watches(
    namespace: str, globs: list[str]
) -> None:
    pattern = ", ".join(globs)
    assert namespace_matches(namespace, pattern) == match_namespace(
        NamespaceName(namespace), pattern
    )


def test_the_cache_answers_only_once_kopf_and_the_informers_are_both_complete() -> None:
    cache = ObjectCache(lambda *_: None, lambda _: iter([]), awaiting={"kopf", "informers"})
    cache.mark_ready("kopf")
    with pytest.raises(Unavailable):
        cache.get("ConfigMap", "team-a", "a")
    cache.mark_ready("informers")
    assert cache.get("ConfigMap", "team-a", "a") is None


def test_a_listing_of_one_namespace_leaves_the_other_namespaces_in_a_shared_store() -> None:
    store, recorder = Store("ConfigMap"), Recorder()
    feeds = {ns: Feed(store, recorder.emit, recorder.on_synced, namespace=ns) for ns in "ab"}
    listing(feeds["a"], obj("x", 1, ns="a"))
    listing(feeds["b"], obj("y", 1, ns="b"))
    listing(feeds["a"], obj("x", 1, ns="a"))  # a re-list of a: b's objects stay
    assert store.known() == {("a", "x"), ("b", "y")} and recorder.events == []
    listing(feeds["b"])
    assert store.known() == {("a", "x")} and recorder.events == [("DELETED", "y")]
