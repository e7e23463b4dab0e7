"""Several ingest replicas, one agent: the stored status is the source of truth (pure).

Each replica keeps only the deltas it recorded since its last successful write
(:class:`.pending.Pending`) and merges them onto the latest stored status before writing
it back with that status's resourceVersion as a precondition (a 409 means another replica
wrote in between: re-read, merge again; see :mod:`.writer`). :func:`rebase` is the merge;
what wins, field by field:

- duplicates: a pending violation whose id is in the stored ``recentViolations`` or
  whose marker is in ``recentViolationKeys`` was stored by another replica (or by a
  write whose answer was lost) and is taken out of the deltas, never counted twice;
- ``violations`` counts and ``violationHistory`` buckets: stored + pending, per severity
  (and per bucket; ``total`` is their sum;
  per-type counts are not in the status and stay per replica, like the metrics); the
  same for ``lostViolations`` (drops a sidecar reported, each report counted once by its
  idempotency key);
- ``recentViolations``: union by id of pending and stored, newest first, 20;
  ``recentViolationKeys``: pending markers, then stored ones, distinct, 128;
- trust: the stored debt (1 - ``trustScore``) brought forward by recovery from when
  ingest last wrote it (its managedFields time), plus the pending weights (cap 1),
  see :mod:`.trust`;
- ``interactions``: the larger; ``reportedTrustScore`` / ``responseTimeMs``: this
  replica's if it received a metrics report since its last write, else stored;
- ``heartbeat``: the block with the newer ``lastHeartbeat``; ``lastViolationTime``:
  the newer;
- ``enforcement``: :func:`.enforcement.merge` (higher breach wins, an action only
  escalates; cleared only by the acknowledgement release; ``criticalBreach`` the larger);
- conditions: a stored condition whose status differs from the view's is adopted (so
  its transition time survives), then all are re-evaluated on the merged view.

With one replica the stored status is always its own last write (:func:`foreign` is
False), so nothing is rebased and the view is exactly what it was before replicas.
"""

from __future__ import annotations

from collections import deque

from . import enforcement as enf
from . import history
from .codec import StoredStatus, decode_status, fingerprint
from .conditions import refresh
from .records import Recorded
from .state import RECENT_VIOLATIONS, VIOLATION_KEYS, AgentState
from .trust import TrustDebt


def newer(version: str, than: str) -> bool:
    """Whether resourceVersion ``version`` is later than ``than``.

    resourceVersions are opaque; etcd's are integers, compared as such. Anything else
    that differs counts as newer (a spurious 409 costs one re-read, never a lost count).
    """
    if version == than:
        return False
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return True


def foreign(state: AgentState) -> bool:
    """The stored ingest status is not this replica's last write (another replica's)."""
    stored = state.stored
    return stored is not None and fingerprint(stored.status) != state.written


def rebase(state: AgentState, now: float) -> None:
    """Make the view the stored status (``state.stored``) plus this replica's deltas."""
    stored_agent = state.stored
    if stored_agent is None:
        return
    stored = decode_status(stored_agent.status, now)
    pending = state.pending
    pending.drop_stored({item.id for item in stored.recent}, set(stored.keys))
    for severity, count in stored.counts.items():
        state.counts[severity] = count + pending.counts[severity]
    for severity, count in stored.lost.items():
        state.lost[severity] = count + pending.lost[severity]
    state.buckets = history.combine(stored.buckets, pending.buckets)
    _merge_violations(state, stored)
    debt = TrustDebt.from_score(
        stored.trust_score,
        min(now, stored_agent.written_at if stored_agent.written_at is not None else now),
    )
    debt.add(pending.weight, now, state.config.scoring.recovery_per_hour)
    state.trust = debt
    _merge_metrics(state, stored)
    _merge_heartbeat(state, stored)
    acknowledged = max(state.config.acknowledged_breach, stored_agent.acknowledged)
    state.enforcement = enf.merge(state.enforcement, stored.enforcement, acknowledged)
    for ctype, condition in stored.conditions.items():
        current = state.conditions.get(ctype)
        if current is None or current.status != condition.status:
            state.conditions[ctype] = condition
    refresh(state, now)


def _merge_violations(state: AgentState, stored: StoredStatus) -> None:
    mine = [item.recorded for item in state.pending.newest_first()]
    merged: dict[str, Recorded] = {}
    for item in [*mine, *stored.recent]:
        merged.setdefault(item.id, item)
    recent = sorted(merged.values(), key=lambda item: item.time, reverse=True)
    state.recent = deque(recent[:RECENT_VIOLATIONS], maxlen=RECENT_VIOLATIONS)
    markers = [item.marker for item in state.pending.newest_first()] + list(stored.keys)
    keys = list(dict.fromkeys(markers))
    state.keys = deque(keys[:VIOLATION_KEYS], maxlen=VIOLATION_KEYS)
    if stored.last_violation_time is not None and (
        state.last_violation_time is None or stored.last_violation_time > state.last_violation_time
    ):
        state.last_violation_time = stored.last_violation_time


def _merge_metrics(state: AgentState, stored: StoredStatus) -> None:
    state.interactions = max(state.interactions, stored.interactions)
    if not state.pending.metrics:  # no newer report of our own: the stored values stand
        if stored.reported_trust is not None:
            state.reported_trust = stored.reported_trust
        if stored.response_time_ms is not None:
            state.response_time_ms = stored.response_time_ms


def _merge_heartbeat(state: AgentState, stored: StoredStatus) -> None:
    if stored.last_heartbeat is not None and (
        state.last_heartbeat is None or stored.last_heartbeat > state.last_heartbeat
    ):
        state.heartbeat_state = stored.heartbeat_state
        state.last_heartbeat = stored.last_heartbeat
        state.uptime = stored.uptime
        state.last_activity = stored.last_activity
