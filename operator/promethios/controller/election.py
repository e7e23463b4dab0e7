"""Leader election at run time: a thread keeping (or waiting for) the Lease.

The decisions are :mod:`.leader`'s; this module reads and writes the Lease through a
:class:`LeaseStore` (the API server's, :mod:`..kube.lease`, or a test's) on a timer:

- a follower tries every ``retry_period``; when it wins, ``on_started`` runs (the
  operator starts kopf's reconciling then);
- the leader renews every ``retry_period``; if it has not renewed for ``renew_deadline``,
  or finds another holder, ``on_lost`` runs — by default the process exits non-zero at
  once (controller-runtime's behaviour), so the pod restarts as a follower and nothing
  reconciles after the Lease is gone;
- :meth:`LeaderElector.stop` ends the thread and, if this replica holds the Lease,
  releases it so a standby takes over at its next try instead of after the full duration.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..kube import lease as klease
from ..kube.client import Client
from .leader import (
    Action,
    ElectionSettings,
    LeaseRecord,
    Observed,
    decide,
    lease_manifest,
    observe,
    record_from_lease,
    released,
    renewal_overdue,
)

log = logging.getLogger("promethios.leader")

#: Exit code of a replica that lost the Lease (the pod restarts and rejoins as a follower).
EXIT_LOST = 3

LeaseConflict = klease.LeaseConflict


class LeaseStore(Protocol):
    """Where the Lease is read and written (raises :class:`LeaseConflict` on a lost race)."""

    def read(self) -> dict[str, Any] | None: ...

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]: ...


class KubeLeaseStore:
    """The Lease on the API server; every request is bounded by the retry period."""

    def __init__(self, client: Client, settings: ElectionSettings) -> None:
        self.client, self.settings = client, settings
        # A request hanging past the renew deadline must not keep a stale leader leading.
        self.timeout = max(1.0, settings.renew_deadline / 2)

    def read(self) -> dict[str, Any] | None:
        name, namespace = self.settings.name, self.settings.namespace
        return klease.read_lease(self.client, namespace, name, self.timeout)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return klease.create_lease(self.client, manifest, self.timeout)

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return klease.replace_lease(self.client, manifest, self.timeout)


def exit_on_lost() -> None:
    """Stop reconciling at once: end the process (logging flushes per record)."""
    log.error("leader election lost: exiting (code %d) to restart as a follower", EXIT_LOST)
    os._exit(EXIT_LOST)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """One replica's candidacy; :meth:`start` runs it on a daemon thread."""

    def __init__(
        self,
        settings: ElectionSettings,
        store: LeaseStore,
        *,
        on_started: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = exit_on_lost,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings, self.store = settings, store
        self.on_started, self.on_lost = on_started, on_lost
        self.clock, self.wall = clock, wall
        self.leading = threading.Event()
        self.stopping = threading.Event()
        self.observed: Observed | None = None
        self.last_renewed: float | None = None
        self._thread: threading.Thread | None = None
        self._waiting_logged_for: str | None = None
        self._last_failure: str | None = None

    def try_once(self) -> bool:
        """Read the Lease and write what :func:`.leader.decide` says; whether this replica
        holds it afterwards. A lost race (:class:`LeaseConflict`) is a plain False."""
        now, wall = self.clock(), self.wall()
        self.observed = observe(self.observed, record_from_lease(self.store.read()), now)
        decision = decide(self.settings, self.observed, now, wall)
        if decision.record is None:
            self._log_waiting(decision.reason)
            return False
        manifest = lease_manifest(self.settings, decision.record)
        try:
            if decision.action is Action.CREATE:
                written = self.store.create(manifest)
            else:
                written = self.store.replace(manifest)
        except LeaseConflict:
            log.debug("Lease %s changed under us; reading it again", self.settings.name)
            return False
        self.observed = observe(self.observed, record_from_lease(written), now)
        if not self.leading.is_set():
            log.info("leader election: %s is the leader (%s)", self.settings.identity,
                     decision.reason)  # fmt: skip
        return True

    def held_by_another(self) -> bool:
        """Whether the last read showed another replica holding the Lease."""
        record = self.observed.record if self.observed else None
        return bool(record and record.holder and record.holder != self.settings.identity)

    def step(self) -> None:
        """One attempt and its consequence: become leader, stay, or lose the Lease."""
        try:
            holds = self.try_once()
        except Exception as error:  # unreachable, a timeout, a 5xx, or no RBAC for leases
            self._log_failure(str(error))
            holds = False
        else:
            self._last_failure = None
        now = self.clock()
        if holds:
            self.last_renewed = now
            if not self.leading.is_set():
                self.leading.set()
                self.on_started()
            return
        if not self.leading.is_set():
            return
        if self.held_by_another() or renewal_overdue(self.settings, self.last_renewed or 0, now):
            log.error("leader election: %s lost the Lease (last renewed %.1f s ago)",
                      self.settings.identity, now - (self.last_renewed or 0))  # fmt: skip
            self.leading.clear()
            self.stopping.set()
            self.on_lost()

    def run(self) -> None:
        """Attempt every ``retry_period`` until stopped or the Lease is lost."""
        log.info("leader election: %s is a candidate for Lease %s/%s", self.settings.identity,
                 self.settings.namespace, self.settings.name)  # fmt: skip
        while not self.stopping.is_set():
            self.step()
            self.stopping.wait(self.settings.retry_period)

    def start(self) -> None:
        """Run on a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="promethios-leader", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """End the candidacy; a leader releases the Lease. Whether it released it."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.renew_deadline)
        if not self.leading.is_set():
            return False
        self.leading.clear()
        return self.release()

    def release(self) -> bool:
        """Write the Lease with no holder, if it is still ours (never another's)."""
        try:
            current = record_from_lease(self.store.read())
            if current is None or current.holder != self.settings.identity:
                return False
            self.store.replace(lease_manifest(self.settings, released(current, self.wall())))
        except Exception as error:
            log.warning("leader election: Lease not released (%s); a standby takes over "
                        "once it expires", error)  # fmt: skip
            return False
        log.info("leader election: %s released the Lease", self.settings.identity)
        return True

    def _log_failure(self, message: str) -> None:
        """Warn of a failed read or write once per distinct error, not every retry period."""
        if message != self._last_failure:
            self._last_failure = message
            log.warning("leader election: Lease %s/%s not read or written (no reconciling "
                        "until it is; see --leader-election-namespace and the leases RBAC): %s",
                        self.settings.namespace, self.settings.name, message)  # fmt: skip

    def _log_waiting(self, reason: str) -> None:
        """Say once per holder that this replica is a follower waiting for the Lease."""
        record: LeaseRecord | None = self.observed.record if self.observed else None
        holder = record.holder if record else ""
        if holder != self._waiting_logged_for:
            self._waiting_logged_for = holder
            log.info("leader election: waiting for the Lease (%s); not reconciling until it "
                     "is ours", reason)  # fmt: skip
