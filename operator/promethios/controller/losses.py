"""Violations a stopped pod's sidecar could not deliver (pure).

On SIGTERM the sidecar keeps delivering its spool for ``spec.sidecar.drainSeconds``; what
is still undelivered when it exits (the ingest unreachable for the whole drain) it
summarises in its container's termination message (:class:`~promethios.api.wire.
TerminationSummary`: counts and times only, never content). The spool is an emptyDir, so
those violations are gone with the pod: the operator reads the summary from the pod's
status and reports it as a Warning Event on the GovernedAgent, named after the pod's uid so
that the same pod is reported once however often its status is seen (the create of an
existing Event name is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from ..api.metadata import LABEL_AGENT
from ..api.wire import TerminationSummary
from ..builders.workload import SIDECAR_CONTAINER

REASON = "ViolationsUndelivered"
#: The kubelet keeps at most 4 KiB of a termination message; anything longer is not ours.
MAX_MESSAGE = 4096


@dataclass(frozen=True)
class UndeliveredReport:
    """One stopped pod's undelivered violations, as the Event that reports them."""

    agent: str
    namespace: str
    pod: str
    pod_uid: str
    undelivered: int
    by_severity: dict[str, int]

    @property
    def event_name(self) -> str:
        """Deterministic per pod: a second sighting finds the Event already there."""
        return f"{self.agent}.undelivered.{self.pod_uid}"[:253]

    @property
    def message(self) -> str:
        """The Event's text: counts only."""
        detail = ", ".join(f"{n} {s}" for s, n in sorted(self.by_severity.items()) if n)
        return (
            f"pod {self.pod} stopped with {self.undelivered} undelivered violations"
            + (f" ({detail})" if detail else "")
            + ": the ingest API was unreachable for the whole drain"
        )


def _sidecar_termination(status: Mapping[str, Any]) -> str | None:
    """The sidecar container's termination message, if it has terminated."""
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            if container.get("name") != SIDECAR_CONTAINER:
                continue
            for state in ("state", "lastState"):
                terminated = (container.get(state) or {}).get("terminated")
                if terminated and isinstance(terminated.get("message"), str):
                    return str(terminated["message"])
    return None


def undelivered_report(pod: Mapping[str, Any]) -> UndeliveredReport | None:
    """The report for a pod whose sidecar stopped with undelivered violations, else None."""
    metadata = pod.get("metadata") or {}
    agent = (metadata.get("labels") or {}).get(LABEL_AGENT)
    message = _sidecar_termination(pod.get("status") or {})
    if not agent or not message or len(message) > MAX_MESSAGE:
        return None
    try:
        summary = TerminationSummary.model_validate_json(message)
    except pydantic.ValidationError:
        return None
    if summary.undelivered_violations <= 0:
        return None
    return UndeliveredReport(
        agent=str(agent),
        namespace=str(metadata.get("namespace")),
        pod=str(metadata.get("name")),
        pod_uid=str(metadata.get("uid")),
        undelivered=summary.undelivered_violations,
        by_severity={str(s): n for s, n in summary.undelivered_by_severity.items()},
    )
