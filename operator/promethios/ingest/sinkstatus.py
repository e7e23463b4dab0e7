"""``AlertSink.status``: deliveries, the latest failure and ``Ready``, written by the ingest API.

The ingest API delivers the alerts, so it alone writes an AlertSink's status (field
manager ``promethios-ingest``; the operator writes none of it). Several replicas deliver
to one sink: each keeps only its deltas since its last successful write and adds them to
the stored status under a resourceVersion precondition (a 409 keeps the deltas for the
next round), exactly as the GovernedAgent counters are merged. So ``delivered`` and
``failed`` count every replica's deliveries once.

- ``delivered`` / ``failed``: stored + this replica's deltas (``failed`` counts alerts given
  up on, whether they failed or the destination policy refused them);
- ``lastDeliveryTime`` / ``lastFailureTime``: the newer of stored and ours;
- ``lastError``: the latest failure in the words of its AlertDeliveryFailed Event (the
  attempts, or the rule that refused the URL as written), never an address, status code
  or reply (see :mod:`.alerts`); kept from the stored status when that failure is newer;
- ``Ready``: True/``Delivered`` when the latest outcome was a delivery, False/
  ``DeliveryFailed`` or ``RefusedByDestinationPolicy`` when it was a failure; its
  transition time moves only when its status changes;
- ``observedGeneration``: the generation of the sink as read before the write.

A sink nobody has alerted through has no status yet (the dashboard shows "no deliveries").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..api.alertsink import AlertSinkStatus
from ..api.common import parse_or_default
from ..api.conditions import (
    DELIVERED,
    DELIVERY_FAILED,
    READY,
    REFUSED_BY_POLICY,
    transition_time,
)
from .codec import epoch, rfc3339

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0


class SinkStatusIO(Protocol):
    """Reads an AlertSink and writes its status under a resourceVersion precondition."""

    async def read_sink(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def apply_sink_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> int: ...


@dataclass(frozen=True)
class SinkDeltas:
    """One replica's outcomes for one sink since its last successful write."""

    delivered: int = 0
    failed: int = 0
    last_delivery: float | None = None
    last_failure: float | None = None
    last_error: str = ""
    refused: bool = False

    def minus(self, carried: SinkDeltas) -> SinkDeltas:
        """What remains once a write carrying ``carried`` succeeded."""
        return replace(
            self,
            delivered=max(0, self.delivered - carried.delivered),
            failed=max(0, self.failed - carried.failed),
            last_delivery=None
            if self.last_delivery == carried.last_delivery
            else self.last_delivery,
            last_failure=None if self.last_failure == carried.last_failure else self.last_failure,
        )

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.delivered or self.failed or self.last_delivery or self.last_failure)


def _newer(first: float | None, second: float | None) -> float | None:
    values = [value for value in (first, second) if value is not None]
    return max(values) if values else None


def merged_status(stored: Mapping[str, Any], deltas: SinkDeltas, now: float) -> dict[str, Any]:
    """The status to write: the stored one (``AlertSink`` body) plus ``deltas`` (pure)."""
    metadata = stored.get("metadata") or {}
    status = parse_or_default(AlertSinkStatus, stored.get("status"))
    stored_delivery = epoch(status.last_delivery_time)
    stored_failure = epoch(status.last_failure_time)
    last_delivery = _newer(stored_delivery, deltas.last_delivery)
    last_failure = _newer(stored_failure, deltas.last_failure)
    ours_is_latest_failure = deltas.last_failure is not None and (
        stored_failure is None or deltas.last_failure >= stored_failure
    )
    last_error = deltas.last_error if ours_is_latest_failure else status.last_error
    previous = next((c for c in status.conditions if c.type == READY), None)
    if last_failure is not None and (last_delivery is None or last_failure > last_delivery):
        refused = (
            deltas.refused
            if ours_is_latest_failure
            else (previous is not None and previous.reason == REFUSED_BY_POLICY)
        )
        ready, reason, message = (
            "False",
            REFUSED_BY_POLICY if refused else DELIVERY_FAILED,
            last_error,
        )
    else:
        ready, reason, message = "True", DELIVERED, "the latest alert was delivered"
    since = transition_time(
        previous.status if previous else None,
        epoch(previous.last_transition_time) if previous else None,
        ready,
        now,
    )
    body: dict[str, Any] = {
        "delivered": status.delivered + deltas.delivered,
        "failed": status.failed + deltas.failed,
        "lastError": last_error[:1024],
        "conditions": [
            {
                "type": READY,
                "status": ready,
                "reason": reason,
                "message": message[:1024],
                "lastTransitionTime": rfc3339(since),
                "observedGeneration": metadata.get("generation"),
            }
        ],
        "observedGeneration": metadata.get("generation"),
    }
    if last_delivery is not None:
        body["lastDeliveryTime"] = rfc3339(last_delivery)
    if last_failure is not None:
        body["lastFailureTime"] = rfc3339(last_failure)
    if body["observedGeneration"] is None:
        del body["observedGeneration"]
        del body["conditions"][0]["observedGeneration"]
    return body


class SinkStatusRecorder:
    """Collects delivery outcomes per sink and writes them every :data:`FLUSH_SECONDS`."""

    def __init__(
        self, io: SinkStatusIO | None, clock: Callable[[], float], interval: float = FLUSH_SECONDS
    ) -> None:
        self._io = io
        self._clock = clock
        self._interval = interval
        self.deltas: dict[tuple[str, str], SinkDeltas] = {}

    def delivered(self, namespace: str, name: str) -> None:
        """An alert got through to the sink."""
        key = (namespace, name)
        current = self.deltas.get(key, SinkDeltas())
        self.deltas[key] = replace(
            current, delivered=current.delivered + 1, last_delivery=self._clock()
        )

    def failed(self, namespace: str, name: str, message: str, refused: bool) -> None:
        """An alert was given up on (``message``: the AlertDeliveryFailed Event's text)."""
        key = (namespace, name)
        current = self.deltas.get(key, SinkDeltas())
        self.deltas[key] = replace(
            current,
            failed=current.failed + 1,
            last_failure=self._clock(),
            last_error=message,
            refused=refused,
        )

    async def run(self) -> None:
        """Flush forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Write every sink with outcomes; a conflict or error keeps them for next time."""
        if self._io is None:
            return
        for key, carried in list(self.deltas.items()):
            if carried.empty:
                continue
            try:
                code = await self._write(key, carried)
            except Exception as error:  # never the sink's URL or reply: only the kind
                log.warning("AlertSink %s/%s status: %s", *key, type(error).__name__)
                continue
            if code in (200, 201, 404):  # written, or the sink is gone
                remaining = self.deltas.get(key, SinkDeltas()).minus(carried)
                if code == 404 or remaining.empty:
                    self.deltas.pop(key, None)
                else:
                    self.deltas[key] = remaining

    async def _write(self, key: tuple[str, str], carried: SinkDeltas) -> int:
        assert self._io is not None
        namespace, name = key
        stored = await self._io.read_sink(namespace, name)
        if stored is None:
            return 404
        version = str((stored.get("metadata") or {}).get("resourceVersion") or "")
        body = merged_status(stored, carried, self._clock())
        return await self._io.apply_sink_status_if(namespace, name, body, version)
