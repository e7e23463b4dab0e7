"""The summary a stopping sidecar leaves in its container's termination message.

Kubernetes shows a container's termination message (the file at
``terminationMessagePath``, ``/dev/termination-log`` by default) in the pod's
status once the container has stopped, so what a replaced pod could not deliver
is not lost silently: the operator reads the summary and surfaces it. It holds
counts and a time only (:class:`~promethios.api.wire.TerminationSummary`),
never a violation's content.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from promethios.api.sidecarconfig import DEFAULT_TERMINATION_MESSAGE_PATH
from promethios.api.wire import TerminationSummary

from .spool import Spool

log = logging.getLogger(__name__)


def summarize(spools: list[Spool], unreported_drops: dict[str, int]) -> TerminationSummary:
    """What is still undelivered in ``spools``, and the drops the ingest never confirmed."""
    by_severity: Counter[str] = Counter()
    oldest_ns: int | None = None
    for spool in spools:
        counts, oldest = spool.undelivered()
        by_severity.update(counts)
        if oldest is not None:
            oldest_ns = oldest if oldest_ns is None else min(oldest_ns, oldest)
    oldest_time = None if oldest_ns is None else datetime.fromtimestamp(oldest_ns / 1e9, UTC)
    return TerminationSummary.model_validate(
        {
            "undeliveredViolations": sum(by_severity.values()),
            "undeliveredBySeverity": dict(by_severity),
            "oldestUndelivered": oldest_time,
            "droppedViolations": sum(unreported_drops.values()),
            "droppedViolationsBySeverity": unreported_drops,
        }
    )


def write_summary(path: str, summary: TerminationSummary) -> bool:
    """Write the summary as JSON to ``path``; False (and a warning) if that fails.

    The default path is only written if it exists (the kubelet creates it in every
    container): a sidecar run outside Kubernetes does not create ``/dev`` files.
    """
    text = summary.model_dump_json(by_alias=True)
    if path == DEFAULT_TERMINATION_MESSAGE_PATH and not Path(path).exists():
        log.info("no %s (not in a Kubernetes container); summary: %s", path, text)
        return False
    try:
        Path(path).write_text(text)
    except OSError as error:
        log.warning("cannot write the termination summary to %s: %s (%s)", path, error, text)
        return False
    if summary.undelivered_violations or summary.dropped_violations:
        log.warning("stopping with violations not delivered: %s", text)
    return True
