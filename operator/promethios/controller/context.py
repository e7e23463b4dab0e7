"""What a reconcile runs with: the API client, build settings, the clock, and the per-agent
timers that schedule the next reconcile (a key's expiry, a retry with backoff, a deferred
progress write).

:class:`ReconcileContext` is built once by the composition root and handed to every
handler; tests give it a fake client, a fixed clock and recorded timers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..builders import BuildSettings
from ..builders.apikey import generate_api_key
from ..kube.client import Client
from .cache import ObjectCache
from .observed import References
from .timers import TIMERS

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


MAX_BACKOFF = 300.0


#: How long a status change that is rollout progress only (pod counts) may wait to be
#: written together with the next one (e.g. the Ready transition a moment later).
PROGRESS_DELAY = 5.0

#: How long a new agent's first status may wait while its pods start, so that it goes
#: out together with Ready: one status write to Ready instead of two. Only a first
#: status with nothing to act on waits (a missing reference, a refused image, any
#: Warning is written at once); the children it creates show meanwhile.
FIRST_STATUS_DELAY = 30.0


#: Purposes of a scheduled reconcile (one timer per agent and purpose).
EXPIRY, RETRY, PROGRESS = "expiry", "retry", "progress"


def backoff(retry: int) -> float:
    """5 s, 10 s, 20 s … up to 5 min: retries of a missing reference slow down."""
    return float(min(5.0 * 2 ** min(retry, 16), MAX_BACKOFF))


class KeyIndex(Protocol):
    """Values by (namespace, name), read as kopf's indexes are: an iterable of one value."""

    def get(self, key: tuple[str, str], default: Any = ()) -> Any:
        """The values stored under ``key`` (``default`` when none)."""


class Cancellable(Protocol):
    """A started timer."""

    def cancel(self) -> None:
        """Stop it unless it already fired."""


def _start_timer(delay: float, fire: Callable[[], None]) -> Cancellable:
    return TIMERS.start(delay, fire)


@dataclass
class _Scheduled:
    due: datetime
    timer: Cancellable


@dataclass
class ReconcileContext:
    """What a reconcile needs besides the agent: the client, settings, clock, key source."""

    client: Client
    settings: BuildSettings = field(default_factory=BuildSettings)
    clock: Callable[[], datetime] = _utcnow
    new_key: Callable[[], str] = generate_api_key
    start_timer: Callable[[float, Callable[[], None]], Cancellable] = _start_timer
    #: :data:`FIRST_STATUS_DELAY` (tests shorten it).
    first_status_delay: float = FIRST_STATUS_DELAY
    _locks: dict[tuple[str, str], threading.RLock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)
    _timers: dict[tuple[str, str], _Scheduled] = field(default_factory=dict)
    _retries: dict[str, int] = field(default_factory=dict)
    #: resourceVersion of the Deployment each agent's last reconcile read (see ``known``).
    deployment_rv: dict[tuple[str, str], int] = field(default_factory=dict)
    #: ControllerRevisions written while the status entry recording them waits to be
    #: written (a deferred first status), by agent: not written again meanwhile.
    unrecorded_revisions: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: Watch-fed copies of the agents and their children (:mod:`.cache`), installed at
    #: start-up; None: every read is a GET (tests, tools).
    cache: ObjectCache | None = None
    #: The references' watch-fed indexes, for reconciles started without a handler's
    #: (the resync, timers); None: GETs.
    references: References | None = None
    #: The data keys of Secrets that are not children, by (namespace, name), from the
    #: Secret informer (installed at start-up); None: GETs.
    secret_keys: KeyIndex | None = None

    def lock_for(self, namespace: str, name: str) -> threading.RLock:
        """One lock per agent: handlers, child events and the resync never interleave.

        By name, so that :func:`reconcile_named` can read the agent under it (a read
        made before another reconcile's status write would plan that write again).
        """
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.RLock())

    def forget(self, uid: str, namespace: str = "", name: str = "") -> None:
        """Drop a deleted agent's lock, retry count and every reconcile scheduled for it."""
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
            self.deployment_rv.pop((namespace, name), None)
            self.unrecorded_revisions.pop((namespace, name), None)
            self._retries.pop(uid, None)
            gone = [key for key in self._timers if key[0] == uid]
            timers = [self._timers.pop(key).timer for key in gone]
        for timer in timers:
            timer.cancel()

    def scheduled(self, uid: str, purpose: str = EXPIRY) -> datetime | None:
        """When the reconcile of this purpose is due; None when none is scheduled."""
        with self._locks_guard:
            entry = self._timers.get((uid, purpose))
        return None if entry is None else entry.due

    def cancel(self, uid: str, purpose: str) -> None:
        """Drop the scheduled reconcile of this purpose (it is no longer needed)."""
        with self._locks_guard:
            entry = self._timers.pop((uid, purpose), None)
        if entry is not None:
            entry.timer.cancel()

    def reconcile_at(
        self,
        uid: str,
        namespace: str,
        name: str,
        when: datetime,
        purpose: str = EXPIRY,
        keep_earlier: bool = False,
    ) -> None:
        """Reconcile the agent again at ``when`` (e.g. when a rotated-out key expires).

        One timer per agent and purpose: a new time replaces the scheduled one, unless
        ``keep_earlier`` and the scheduled one is due first. Timers live in memory only;
        after a restart the initial listing and the periodic resync catch up.
        """
        key = (uid, purpose)
        delay = max(0.0, (when - self.clock()).total_seconds())
        if purpose == EXPIRY:
            delay += 1.0  # strictly after the expiry

        def fire() -> None:
            with self._locks_guard:
                if self._timers.get(key) is not entry:
                    return  # replaced or cancelled meanwhile
                self._timers.pop(key)
            # Imported when a timer fires: the reconcile module imports this one.
            from .reconcile import reconcile_named

            try:
                reconcile_named(self, namespace, name)
            except Exception:
                log.warning("scheduled reconcile of %s/%s failed", namespace, name, exc_info=True)
                self.retry_later(uid, namespace, name)

        with self._locks_guard:
            previous = self._timers.get(key)
            if keep_earlier and previous is not None and previous.due <= when:
                return
            entry = _Scheduled(when, self.start_timer(delay, fire))
            self._timers[key] = entry
        if previous is not None:
            previous.timer.cancel()

    def retry_later(self, uid: str, namespace: str, name: str) -> float:
        """Reconcile again after a growing delay (5 s doubling to 5 min); the delay."""
        with self._locks_guard:
            retry = self._retries.get(uid, 0)
            self._retries[uid] = retry + 1
        delay = backoff(retry)
        when = self.clock() + timedelta(seconds=delay)
        self.reconcile_at(uid, namespace, name, when, purpose=RETRY)
        return delay

    def succeeded(self, uid: str) -> None:
        """A reconcile found nothing missing: reset the backoff, drop a pending retry."""
        with self._locks_guard:
            self._retries.pop(uid, None)
        self.cancel(uid, RETRY)
