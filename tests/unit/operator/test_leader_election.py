"""Leader election: the pure decisions (controller/leader.py) with an injected clock, and
the elector (controller/election.py) against an in-memory Lease store with the API
server's resourceVersion preconditions."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promethios.controller.election import LeaderElector, LeaseConflict
from promethios.controller.leader import (
    Action,
    ElectionSettings,
    LeaseRecord,
    decide,
    expired,
    lease_manifest,
    observe,
    record_from_lease,
    released,
    renewal_overdue,
)
from promethios.controller.options import parse_options

WALL = datetime(2026, 11, 30, 1, 0, 0, 123456, tzinfo=UTC)
A = ElectionSettings(name="lease", namespace="ops", identity="pod-a_1")
B = ElectionSettings(name="lease", namespace="ops", identity="pod-b_2")


def held_by(holder: str, rv: str = "7", transitions: int = 2) -> LeaseRecord:
    return LeaseRecord(holder, 15, WALL, WALL, transitions, rv)


def test_a_missing_lease_is_created_with_this_replica_as_holder() -> None:
    decision = decide(A, observe(None, None, 100.0), 100.0, WALL)
    assert decision.action is Action.CREATE
    assert decision.record == LeaseRecord("pod-a_1", 15, WALL, WALL, 0, None)


def test_the_holder_renews_keeping_its_acquire_time_and_transitions() -> None:
    mine = LeaseRecord("pod-a_1", 15, WALL, WALL, 4, "9")
    later = WALL + timedelta(seconds=2)
    decision = decide(A, observe(None, mine, 50.0), 52.0, later)
    assert decision.action is Action.UPDATE
    assert decision.record == LeaseRecord("pod-a_1", 15, WALL, later, 4, "9")


def test_a_live_lease_of_another_is_not_taken() -> None:
    seen = observe(None, held_by("pod-b_2"), 100.0)
    for now in (100.0, 108.0, 114.9):
        decision = decide(A, seen, now, WALL)
        assert decision.action is Action.WAIT and decision.record is None
        assert "pod-b_2" in decision.reason


def test_renewals_by_the_holder_keep_its_lease_alive() -> None:
    seen = observe(None, held_by("pod-b_2", rv="7"), 100.0)
    seen = observe(seen, held_by("pod-b_2", rv="8"), 110.0)  # renewed: a new resourceVersion
    assert seen.at == 110.0
    assert decide(A, seen, 120.0, WALL).action is Action.WAIT
    unchanged = observe(seen, held_by("pod-b_2", rv="8"), 124.0)
    assert unchanged.at == 110.0  # no change seen: the clock keeps running from 110


def test_an_expired_lease_is_taken_over_under_its_resource_version() -> None:
    seen = observe(None, held_by("pod-b_2", rv="7", transitions=2), 100.0)
    assert not expired(seen, 114.99)
    decision = decide(A, seen, 115.0, WALL)
    assert decision.action is Action.UPDATE
    assert decision.record == LeaseRecord("pod-a_1", 15, WALL, WALL, 3, "7")
    assert "expired" in decision.reason


def test_a_released_lease_is_taken_at_once() -> None:
    free = released(held_by("pod-b_2"), WALL)
    assert (free.holder, free.duration_seconds) == ("", 1)
    decision = decide(A, observe(None, free, 100.0), 100.0, WALL)
    assert decision.action is Action.UPDATE and decision.record is not None
    assert decision.record.holder == "pod-a_1"
    assert decision.reason == "released"


def test_renewal_is_overdue_at_the_renew_deadline() -> None:
    assert not renewal_overdue(A, last_renewed=100.0, now=109.9)
    assert renewal_overdue(A, last_renewed=100.0, now=110.0)


def test_the_lease_object_round_trips() -> None:
    record = LeaseRecord("pod-a_1", 15, WALL, WALL + timedelta(seconds=3), 5, "42")
    manifest = lease_manifest(A, record)
    assert manifest["metadata"]["resourceVersion"] == "42"
    assert manifest["spec"]["renewTime"] == "2026-11-30T01:00:03.123456Z"
    assert record_from_lease(manifest) == record
    assert record_from_lease(None) is None
    assert "resourceVersion" not in lease_manifest(A, LeaseRecord("x"))["metadata"]


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        (ElectionSettings(identity="x", lease_duration=10, renew_deadline=10), "renew-deadline"),
        (ElectionSettings(identity="x", renew_deadline=2, retry_period=2), "retry-period"),
        (ElectionSettings(identity="x", retry_period=0), "retry-period"),
        (ElectionSettings(identity="x", lease_duration=0.5), "lease-duration"),
        (ElectionSettings(identity=""), "identity"),
    ],
)
def test_bad_timing_is_refused_naming_the_flag(settings: ElectionSettings, flag: str) -> None:
    assert flag in (settings.problem() or "")


def test_the_command_line_defaults_and_the_switch_off() -> None:
    assert parse_options([]).election is None  # a single local run reconciles at once
    election = parse_options(["--leader-elect", "--tls-secret-namespace=ops"]).election
    assert election is not None
    assert (election.namespace, election.name) == ("ops", "promethios-operator-leader")
    assert (election.lease_duration, election.renew_deadline, election.retry_period) == (
        15.0,
        10.0,
        2.0,
    )
    other = parse_options(["--leader-elect", "--tls-secret-namespace=ops"]).election
    assert other is not None and other.identity != election.identity  # random suffix
    assert parse_options(["--no-leader-elect"]).election is None
    with pytest.raises(SystemExit):
        parse_options(["--leader-elect", "--leader-election-renew-deadline=20"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return WALL + timedelta(seconds=self.now - 1000.0)


class MemoryLeases:
    """One Lease with the API server's rules: create fails if it exists, a replace needs
    the current resourceVersion; ``down`` makes every request fail like an outage."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("API server unreachable")

    def read(self) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.lease)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if self.lease is not None:
            raise LeaseConflict("exists")
        return self._store(manifest)

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._check()
        current = (self.lease or {}).get("metadata", {}).get("resourceVersion")
        if manifest["metadata"].get("resourceVersion") != current:
            raise LeaseConflict("stale resourceVersion")
        return self._store(manifest)

    def _store(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(manifest)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity") or "")


class Outcomes:
    def __init__(self) -> None:
        self.started = 0
        self.lost = 0


def elector(settings: ElectionSettings, store: MemoryLeases, clock: Clock) -> tuple[
    LeaderElector, Outcomes
]:  # fmt: skip
    outcomes = Outcomes()

    def started() -> None:
        outcomes.started += 1

    def lost() -> None:
        outcomes.lost += 1

    candidate = LeaderElector(
        settings, store, on_started=started, on_lost=lost, clock=clock, wall=clock.wall
    )
    return candidate, outcomes


def test_two_candidates_one_leader_and_a_takeover_after_the_leader_dies() -> None:
    store, clock = MemoryLeases(), Clock()
    a, a_seen = elector(A, store, clock)
    b, b_seen = elector(B, store, clock)
    a.step()
    b.step()
    assert (a.leading.is_set(), b.leading.is_set()) == (True, False)
    assert (store.holder(), a_seen.started, b_seen.started) == ("pod-a_1", 1, 0)
    for _ in range(5):  # a renews every retry period; b keeps seeing a live lease
        clock.now += 2
        a.step()
        b.step()
    assert not b.leading.is_set() and store.holder() == "pod-a_1"
    # a dies (no more renewals): b takes over one lease duration after it last saw a change.
    last_change = clock.now
    while not b.leading.is_set():
        clock.now += 2
        b.step()
    assert last_change + 15 <= clock.now < last_change + 15 + 2
    assert store.holder() == "pod-b_2"
    assert (store.lease or {})["spec"]["leaseTransitions"] == 1


def test_a_release_hands_over_at_the_next_try() -> None:
    store, clock = MemoryLeases(), Clock()
    a, _ = elector(A, store, clock)
    b, b_seen = elector(B, store, clock)
    a.step()
    b.step()
    assert a.stop() is True
    assert store.holder() == ""
    clock.now += 2
    b.step()
    assert b_seen.started == 1 and store.holder() == "pod-b_2"
    assert a.release() is False  # never releases a lease it does not hold
    assert store.holder() == "pod-b_2"


def test_a_follower_stopping_releases_nothing() -> None:
    store, clock = MemoryLeases(), Clock()
    a, _ = elector(A, store, clock)
    b, _ = elector(B, store, clock)
    a.step()
    b.step()
    assert b.stop() is False
    assert store.holder() == "pod-a_1"


def test_renewals_failing_past_the_deadline_lose_the_lease() -> None:
    store, clock = MemoryLeases(), Clock()
    a, outcomes = elector(A, store, clock)
    a.step()
    store.down = True
    for _ in range(4):  # 8 s of failed renewals: still within the 10 s deadline
        clock.now += 2
        a.step()
        assert outcomes.lost == 0 and a.leading.is_set()
    clock.now += 2
    a.step()
    assert outcomes.lost == 1 and not a.leading.is_set()
    assert a.stopping.is_set()


def test_a_leader_finding_another_holder_loses_at_once() -> None:
    store, clock = MemoryLeases(), Clock()
    a, outcomes = elector(A, store, clock)
    a.step()
    lease = store.read() or {}
    lease["spec"]["holderIdentity"] = "intruder"
    store.replace(lease)
    clock.now += 2
    a.step()
    assert outcomes.lost == 1


class StaleRead:
    """A view of a store whose next read returns an older snapshot (a read that raced)."""

    def __init__(self, store: MemoryLeases, snapshot: dict[str, Any] | None) -> None:
        self.store, self.snapshot = store, snapshot
        self.stale = True

    def read(self) -> dict[str, Any] | None:
        if self.stale:
            self.stale = False
            return copy.deepcopy(self.snapshot)
        return self.store.read()

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.store.create(manifest)

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.store.replace(manifest)


def test_of_two_candidates_racing_for_an_expired_lease_one_wins() -> None:
    store, clock = MemoryLeases(), Clock()
    old, _ = elector(ElectionSettings(name="lease", namespace="ops", identity="old"), store, clock)
    old.step()
    a, _ = elector(A, store, clock)
    racing = StaleRead(store, None)
    b, b_seen = elector(B, racing, clock)  # type: ignore[arg-type]
    a.step()
    b.observed = a.observed  # both have watched the old holder since the same moment
    clock.now += 16
    racing.snapshot = store.read()  # b read the expired lease just before a took it
    assert a.try_once() is True
    assert b.try_once() is False  # its write carried the old resourceVersion: refused
    assert store.holder() == "pod-a_1"
    assert b.try_once() is False  # reading again, b sees a's fresh lease and waits
    assert b_seen.started == 0 and store.holder() == "pod-a_1"


def test_an_unreachable_api_server_is_warned_of_once_per_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryLeases(), Clock()
    follower, outcomes = elector(B, store, clock)
    store.down = True
    with caplog.at_level("WARNING", logger="promethios.leader"):
        for _ in range(5):
            clock.now += 2
            follower.step()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "API server unreachable" in warnings[0]
    assert (outcomes.started, outcomes.lost) == (0, 0)  # a follower just keeps trying
    store.down = False
    follower.step()
    assert follower.leading.is_set() and outcomes.started == 1


def test_a_refused_lease_request_says_status_and_reason_only() -> None:
    from promethios.kube.apply import ApiException
    from promethios.kube.lease import _refused

    error = ApiException(status=404, reason="Not Found")
    error.body = '{"message": "namespaces \\"ops\\" not found", "code": 404}'
    error.headers = {"Audit-Id": "changes-every-request"}
    message = str(_refused("POST", "/apis/coordination.k8s.io/v1/namespaces/ops/leases", error))
    assert message == (
        'POST /apis/coordination.k8s.io/v1/namespaces/ops/leases: HTTP 404: namespaces "ops" '
        "not found"
    )
    assert str(_refused("GET", "/x", ApiException(status=403, reason="Forbidden"))).endswith(
        "HTTP 403: Forbidden"
    )
