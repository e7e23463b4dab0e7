"""AlertSink.status written by the ingest API: counts from every replica once, the latest
outcome decides Ready, the latest failure is told as coarsely as its Event."""

from __future__ import annotations

from typing import Any

from promethios.api.alertsink import AlertSinkStatus
from promethios.ingest.sinkstatus import SinkDeltas, SinkStatusRecorder, merged_status

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class SinkStore:
    """One AlertSink with a resourceVersion; a stale precondition gets 409."""

    def __init__(self) -> None:
        self.rv = 1
        self.obj: dict[str, Any] = {
            "metadata": {
                "namespace": "ns",
                "name": "hook",
                "generation": 3,
                "resourceVersion": "1",
            },
            "spec": {"type": "webhook"},
        }
        self.writes = 0
        self.conflict_next = False

    async def read_sink(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {**self.obj, "metadata": {**self.obj["metadata"], "resourceVersion": str(self.rv)}}

    async def apply_sink_status_if(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> int:
        if self.conflict_next or resource_version != str(self.rv):
            self.conflict_next = False
            self.rv += 1  # another replica wrote in between
            return 409
        AlertSinkStatus.model_validate(status)  # what the API server's schema would check
        self.obj = {**self.obj, "status": status}
        self.rv += 1
        self.writes += 1
        return 200

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


async def test_two_replicas_count_every_delivery_once_and_conflicts_keep_deltas() -> None:
    store, clock = SinkStore(), Clock()
    a, b = SinkStatusRecorder(store, clock), SinkStatusRecorder(store, clock)
    for _ in range(3):
        a.delivered("ns", "hook")
    b.delivered("ns", "hook")
    store.conflict_next = True
    await a.flush()
    assert store.writes == 0 and a.deltas  # the 409 kept a's deltas
    await b.flush()
    await a.flush()
    assert store.status["delivered"] == 4 and not a.deltas and not b.deltas
    assert ready(store.status)["status"] == "True" and store.status["observedGeneration"] == 3
    await a.flush()
    assert store.writes == 2  # nothing new: nothing written


async def test_the_latest_outcome_decides_ready_and_the_error_is_coarse() -> None:
    store, clock = SinkStore(), Clock()
    recorder = SinkStatusRecorder(store, clock)
    recorder.delivered("ns", "hook")
    await recorder.flush()
    since = ready(store.status)["lastTransitionTime"]
    clock.now += 60
    recorder.failed("ns", "hook", "alert to webhook sink hook failed after 6 attempts", False)
    await recorder.flush()
    status = store.status
    assert (status["delivered"], status["failed"]) == (1, 1)
    assert ready(status)["status"] == "False" and ready(status)["reason"] == "DeliveryFailed"
    assert status["lastError"] == "alert to webhook sink hook failed after 6 attempts"
    assert ready(status)["lastTransitionTime"] != since
    clock.now += 60
    recorder.failed("ns", "hook", "refused by destination policy: spec.url ...", True)
    await recorder.flush()
    assert ready(store.status)["reason"] == "RefusedByDestinationPolicy"
    clock.now += 60
    recorder.delivered("ns", "hook")
    await recorder.flush()
    assert ready(store.status)["status"] == "True" and store.status["failed"] == 2
    assert store.status["lastError"].startswith("refused")  # the latest failure stays told


def test_an_older_failure_of_ours_never_hides_a_newer_stored_one() -> None:
    stored = {
        "metadata": {"generation": 1},
        "status": {"failed": 1, "lastFailureTime": "2023-11-14T22:20:00Z",
                   "lastError": "newer error"},
    }  # fmt: skip
    ours = SinkDeltas(failed=1, last_failure=T0, last_error="older error")  # 22:13:20
    body = merged_status(stored, ours, T0 + 600)
    assert body["failed"] == 2 and body["lastError"] == "newer error"
    assert body["lastFailureTime"] == "2023-11-14T22:20:00Z"
