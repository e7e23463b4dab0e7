"""The watch-fed object cache: newest copy wins, own writes bridge the watch's lag, and a
reconcile or resync that reads through it sends no GET.

``Server`` plays the API server (writes bump a resourceVersion, reads are counted); the
"watch" is a dict of packed bodies the test brings up to date when it chooses, so each test
controls exactly how far the watch lags behind the writes.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from operator_fakes import NOW, UID, Keys, apply_status, spec_dict, with_server_defaults

from promethios.controller import reconcile
from promethios.controller.cache import MAX_AGE, ObjectCache, Unavailable, pack, unpack
from promethios.controller.context import FIRST_STATUS_DELAY, PROGRESS, ReconcileContext
from promethios.controller.resync import Resync

NS, NAME = "team-a", "support-bot"


def body(kind: str, name: str, rv: int, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"namespace": NS, "name": name, "resourceVersion": str(rv)}}


class Watch:
    """The index a watch feeds: (kind, ns, name) -> packed body."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], bytes] = {}
        self.broken = False

    def put(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(kind, meta["namespace"], meta["name"])] = pack(obj)

    def lookup(self, kind: str, namespace: str, name: str) -> bytes | None:
        if self.broken:
            raise Unavailable("changed while read")
        return self.objects.get((kind, namespace, name))

    def listing(self, kind: str) -> Iterator[tuple[str, str, bytes]]:
        return iter([(ns, n, b) for (k, ns, n), b in self.objects.items() if k == kind])

    def cache(self, ready: bool = True) -> ObjectCache:
        cache = ObjectCache(self.lookup, self.listing)
        if ready:  # as the first kopf handler marks it
            cache.mark_ready()
        return cache


def test_packing_drops_managed_fields_and_compresses() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "a", "managedFields": [{"x": 1}]}}
    obj["data"] = {"config.yaml": "rule: allow\n" * 200}
    packed = pack(obj)
    assert unpack(packed) == {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": obj["data"]}
    assert len(packed) < len(zlib.decompress(packed)) / 10


def test_an_own_write_is_seen_until_the_watch_catches_up() -> None:
    watch = Watch()
    cache = watch.cache()
    assert cache.get("Deployment", NS, NAME) is None
    cache.wrote("Deployment", {**body("Deployment", NAME, 5), "spec": {"replicas": 1}})
    assert cache.get("Deployment", NS, NAME) == {
        **body("Deployment", NAME, 5),
        "spec": {"replicas": 1},
    }
    assert cache.pending() == 1
    watch.put("Deployment", body("Deployment", NAME, 5))  # the watch event of that write
    assert cache.get("Deployment", NS, NAME) == body("Deployment", NAME, 5)
    assert cache.pending() == 0


def test_a_newer_watched_copy_beats_an_own_write() -> None:
    watch = Watch()
    cache = watch.cache()
    cache.wrote("GovernedAgent", body("GovernedAgent", NAME, 7))
    watch.put("GovernedAgent", {**body("GovernedAgent", NAME, 9), "status": {"by": "ingest"}})
    assert cache.get("GovernedAgent", NS, NAME) == {
        **body("GovernedAgent", NAME, 9),
        "status": {"by": "ingest"},
    }
    # An older watched copy (an event still in flight) never hides the newer write.
    cache.wrote("GovernedAgent", body("GovernedAgent", NAME, 12))
    assert cache.get("GovernedAgent", NS, NAME) == body("GovernedAgent", NAME, 12)


def test_a_deletion_hides_the_stale_copy_until_the_watch_sees_it() -> None:
    watch = Watch()
    cache = watch.cache()
    watch.put("NetworkPolicy", body("NetworkPolicy", NAME, 3))
    cache.deleted("NetworkPolicy", NS, NAME)
    assert cache.get("NetworkPolicy", NS, NAME) is None
    assert cache.pending() == 1
    del watch.objects[("NetworkPolicy", NS, NAME)]
    assert cache.get("NetworkPolicy", NS, NAME) is None
    assert cache.pending() == 0
    watch.put("NetworkPolicy", body("NetworkPolicy", NAME, 4))  # created again later
    assert cache.get("NetworkPolicy", NS, NAME) == body("NetworkPolicy", NAME, 4)


def test_an_own_write_the_index_never_shows_expires() -> None:
    watch, now = Watch(), [0.0]
    cache = ObjectCache(watch.lookup, watch.listing, clock=lambda: now[0])
    cache.mark_ready()
    cache.wrote("Service", body("Service", NAME, 8))  # then deleted by someone, say
    now[0] = MAX_AGE - 1
    assert cache.pending() == 1 and cache.get("Service", NS, NAME) is not None
    now[0] = MAX_AGE + 1
    assert cache.pending() == 0 and cache.get("Service", NS, NAME) is None


def test_an_own_write_outlives_a_watch_that_lags_for_minutes() -> None:
    """Seen at 800 agents on 2 cores: kopf's queues held events for over a minute, and an
    expired own status write made the reconcile plan the first revision again."""
    watch, now = Watch(), [0.0]
    cache = ObjectCache(watch.lookup, watch.listing, clock=lambda: now[0])
    cache.mark_ready()
    watch.put("GovernedAgent", body("GovernedAgent", NAME, 3))
    cache.wrote("GovernedAgent", {**body("GovernedAgent", NAME, 9), "status": {"s": 1}})
    now[0] = 10 * MAX_AGE
    assert cache.get("GovernedAgent", NS, NAME) == {
        **body("GovernedAgent", NAME, 9),
        "status": {"s": 1},
    }


def test_a_write_without_a_numeric_revision_is_not_kept() -> None:
    cache = Watch().cache()
    cache.wrote("Service", {"kind": "Service", "metadata": {"namespace": NS, "name": NAME}})
    assert cache.pending() == 0 and cache.get("Service", NS, NAME) is None


# --------------------------------------------------------------------------- reconcile


class References:
    """The agent's policy and provider Secret exist (answered without a request)."""

    def policy_spec(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return {}

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        return frozenset({"apiKey"})

    def alert_sink_exists(self, namespace: str, name: str) -> bool:
        return True


class Server:
    """Writes bump a resourceVersion and are stored; reads are counted (and answered)."""

    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads: list[tuple[str, str]] = []
        self.writes: list[str] = []

    def stored(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[(kind, obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def apply(self, client: Any, manifest: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.writes.append(manifest["kind"])
        return self.stored(manifest["kind"], with_server_defaults(manifest))

    def apply_status(self, client: Any, ns: str, name: str, status: Any, **_: Any) -> Any:
        self.writes.append("status")
        agent = copy.deepcopy(self.objects[("GovernedAgent", name)])
        agent["status"] = apply_status(agent.get("status") or {}, status)
        return self.stored("GovernedAgent", agent)

    def post_event(self, *args: Any, **_: Any) -> bool:
        self.writes.append("event")
        return True

    def get(self, client: Any, kind: str, namespace: str, name: str) -> Any:
        self.reads.append((kind, name))
        return copy.deepcopy(self.objects.get((kind, name)))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    fake = Server()
    monkeypatch.setattr(reconcile.kapply, "apply", fake.apply)
    monkeypatch.setattr(reconcile.kapply, "apply_status", fake.apply_status)
    monkeypatch.setattr(reconcile.kapply, "post_event", fake.post_event)
    monkeypatch.setattr(reconcile.objects, "get", fake.get)
    monkeypatch.setattr(
        reconcile.objects,
        "get_governed_agent",
        lambda c, ns, n: fake.get(c, "GovernedAgent", ns, n),
    )
    agent = {
        "apiVersion": "governance.promethios.ai/v1alpha1",
        "kind": "GovernedAgent",
        "metadata": {"namespace": NS, "name": NAME, "uid": UID, "generation": 1},
        "spec": spec_dict(),
    }
    fake.stored("GovernedAgent", agent)
    return fake


def context(watch: Watch) -> ReconcileContext:
    ctx = ReconcileContext(client=None, clock=lambda: NOW, new_key=Keys())
    ctx.cache, ctx.references = watch.cache(), References()
    ctx.start_timer = lambda delay, fire: type("T", (), {"cancel": lambda self: None})()
    return ctx


def catch_up(watch: Watch, server: Server) -> None:
    """Every watch event delivered: the index holds what the server holds."""
    for (kind, _), obj in server.objects.items():
        watch.put(kind, obj)


def pods_ready(server: Server) -> None:
    """The Deployment controller reports the pod ready (a write the watch has not seen)."""
    deployment = copy.deepcopy(server.objects[("Deployment", NAME)])
    deployment["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1}
    deployment["status"].update(updatedReplicas=1, availableReplicas=1)
    server.stored("Deployment", deployment)


def ready(server: Server) -> str:
    status = server.objects[("GovernedAgent", NAME)].get("status") or {}
    return next(c["status"] for c in status.get("conditions") or [] if c["type"] == "Ready")


def test_a_new_agent_is_reconciled_with_writes_only(server: Server) -> None:
    watch = Watch()
    watch.put("GovernedAgent", server.objects[("GovernedAgent", NAME)])
    ctx = context(watch)
    reconcile.reconcile_named(ctx, NS, NAME)
    assert server.reads == []
    # The children only: revision 1's ControllerRevision waits until a revision 2 exists.
    assert server.writes == ["Secret", "ConfigMap", "Deployment", "Service"]
    # The first status (pods starting) waits, at most FIRST_STATUS_DELAY, to go out
    # with Ready; a pod-count change later waits PROGRESS_DELAY, which must not shorten it.
    first_due = NOW + timedelta(seconds=FIRST_STATUS_DELAY)
    assert ctx.scheduled(UID, PROGRESS) == first_due
    # A Deployment event before the watch delivered any of those writes: nothing re-planned.
    reconcile.reconcile_named(ctx, NS, NAME, defer_progress=True)
    assert (server.reads, len(server.writes)) == ([], 4)
    assert ctx.scheduled(UID, PROGRESS) == first_due
    pods_ready(server)
    catch_up(watch, server)
    reconcile.reconcile_named(ctx, NS, NAME, defer_progress=True)
    assert server.reads == [] and server.writes[4:] == ["status"]
    assert ready(server) == "True" and ctx.scheduled(UID, PROGRESS) is None
    reconcile.reconcile_named(ctx, NS, NAME)  # the watch has not seen the status write yet
    assert (server.reads, len(server.writes)) == ([], 5)
    catch_up(watch, server)
    assert ctx.cache is not None and ctx.cache.pending() == 0


def test_the_first_status_is_written_when_the_pods_are_slow(server: Server) -> None:
    watch = Watch()
    watch.put("GovernedAgent", server.objects[("GovernedAgent", NAME)])
    ctx = context(watch)
    reconcile.reconcile_named(ctx, NS, NAME)
    catch_up(watch, server)
    reconcile.reconcile_named(ctx, NS, NAME)  # the PROGRESS timer fires: not deferred again
    assert server.writes[4:] == ["status"] and ready(server) == "False"


def test_a_resync_of_agents_in_sync_sends_nothing(server: Server) -> None:
    watch = Watch()
    watch.put("GovernedAgent", server.objects[("GovernedAgent", NAME)])
    ctx = context(watch)
    reconcile.reconcile_named(ctx, NS, NAME)
    pods_ready(server)
    catch_up(watch, server)
    reconcile.reconcile_named(ctx, NS, NAME, defer_progress=True)
    catch_up(watch, server)
    server.reads.clear()
    written = len(server.writes)
    assert Resync(ctx, interval=1.0).pass_once(spread=False) == 1
    assert (server.reads, len(server.writes)) == ([], written)
    # Drift seen by the watch (someone edited the Service) is repaired by the next pass.
    service = copy.deepcopy(server.objects[("Service", NAME)])
    service["spec"]["ports"] = []
    watch.put("Service", server.stored("Service", service))
    Resync(ctx, interval=1.0).pass_once(spread=False)
    assert server.writes[written:] == ["Service"] and server.reads == []


def test_before_the_indexes_are_filled_everything_is_read_with_gets(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf fills its indexes before its first handler runs, but the resync and timers run
    in threads of their own: until then a half-filled index must not say "absent"."""
    watch = Watch()
    watch.put("GovernedAgent", server.objects[("GovernedAgent", NAME)])
    ctx = context(watch)
    ctx.cache = watch.cache(ready=False)
    listed: list[str] = []

    def list_agents(client: Any, namespaces: Any) -> list[dict[str, Any]]:
        listed.append("GovernedAgent")
        return [copy.deepcopy(server.objects[("GovernedAgent", NAME)])]

    monkeypatch.setattr("promethios.controller.resync.objects.list_governed_agents", list_agents)
    with pytest.raises(Unavailable):
        ctx.cache.get("GovernedAgent", NS, NAME)
    Resync(ctx, interval=1.0).pass_once(spread=False)
    assert listed == ["GovernedAgent"]
    assert [kind for kind, _ in server.reads] == ["Secret", "ConfigMap", "Deployment", "Service"]
    ctx.cache.mark_ready()
    assert ctx.cache.get("GovernedAgent", NS, NAME) is not None


def test_an_index_that_cannot_answer_falls_back_to_gets(server: Server) -> None:
    watch = Watch()
    ctx = context(watch)
    watch.broken = True
    reconcile.reconcile_named(ctx, NS, NAME)
    assert [kind for kind, _ in server.reads] == [
        "GovernedAgent",
        "Secret",
        "ConfigMap",
        "Deployment",
        "Service",
    ]


def test_a_first_status_reporting_a_missing_reference_is_written_at_once(server: Server) -> None:
    class NoPolicy(References):
        def policy_spec(self, namespace: str, name: str) -> Mapping[str, Any] | None:
            return None

    watch = Watch()
    watch.put("GovernedAgent", server.objects[("GovernedAgent", NAME)])
    ctx = context(watch)
    ctx.references = NoPolicy()
    reconcile.reconcile_named(ctx, NS, NAME)
    assert "status" in server.writes and ready(server) == "False"
    assert ctx.scheduled(UID, PROGRESS) is None
