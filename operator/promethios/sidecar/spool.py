"""The violation spool: one small JSON file per undelivered violation.

A violation is written here (tmp file, fsync, rename, fsync of the directory)
before the agent's call returns, so it survives an ingest outage and a sidecar
restart; the sender deletes it once the ingest API acknowledges it, or moves it
to ``rejected/`` if the ingest API refuses it for good.

File names carry what the drop policy needs without reading the files:
``<created-ns>-<severity-rank>-<idempotency-key>.json``. The spool is bounded:
when full, the lowest severity goes first (oldest first among equals), and every
drop is counted by severity.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promethios.api.common import SEVERITIES, severity_rank

log = logging.getLogger(__name__)

REJECTED_DIR = "rejected"
REJECTED_MAX = 1000


@dataclass(frozen=True, order=True)
class SpoolEntry:
    """One spooled violation; ordered by (severity rank, age) = drop order."""

    rank: int
    created_ns: int
    key: str

    @property
    def filename(self) -> str:
        """The entry's file name inside the spool directory."""
        return f"{self.created_ns:020d}-{self.rank}-{self.key}.json"

    @property
    def severity(self) -> str:
        """The violation's severity."""
        return str(SEVERITIES[self.rank])

    @classmethod
    def parse(cls, name: str) -> SpoolEntry | None:
        """The entry a file name describes, or None for foreign files."""
        if not name.endswith(".json"):
            return None
        parts = name[: -len(".json")].split("-", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        rank = int(parts[1])
        return cls(rank, int(parts[0]), parts[2]) if rank < len(SEVERITIES) else None


class Spool:
    """A bounded directory of violations; thread-safe (writes run off the event loop)."""

    def __init__(
        self,
        directory: str | Path,
        max_entries: int,
        on_drop: Callable[[str], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.directory = Path(directory)
        self.max_entries = max_entries
        self.dropped: Counter[str] = Counter()
        self._on_drop = on_drop
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._entries: dict[str, SpoolEntry] = {}
        self._last_ns = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / REJECTED_DIR).mkdir(exist_ok=True)
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self) -> None:
        """Index the files a previous run left, discarding half-written tmp files."""
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                continue
            entry = SpoolEntry.parse(path.name) if path.is_file() else None
            if entry is not None:
                self._entries[entry.key] = entry
                self._last_ns = max(self._last_ns, entry.created_ns)
        while len(self._entries) > self.max_entries:  # the bound may have shrunk
            self._drop(min(self._entries.values()))

    def put(self, violation: dict[str, Any]) -> bool:
        """Store a violation (with ``idempotencyKey`` and ``severity``); False if dropped."""
        key = str(violation["idempotencyKey"])
        entry = SpoolEntry(severity_rank(str(violation["severity"])), self._now_ns(), key)
        with self._lock:
            if key in self._entries:
                return True  # same idempotency key: already stored
            if len(self._entries) >= self.max_entries:
                victim = min(self._entries.values())
                if entry < victim:  # the new one is the least important: it goes
                    self._count_drop(entry.severity)
                    return False
                self._drop(victim)
            self._write(entry, violation)
            self._entries[key] = entry
        return True

    def pending(self, limit: int) -> list[tuple[SpoolEntry, dict[str, Any]]]:
        """Up to ``limit`` stored violations, oldest first, with their payloads."""
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: e.created_ns)[:limit]
        out: list[tuple[SpoolEntry, dict[str, Any]]] = []
        for entry in entries:
            try:
                out.append((entry, json.loads((self.directory / entry.filename).read_text())))
            except (OSError, ValueError) as error:
                log.error("unreadable spool file %s (%s); moving it aside", entry.filename, error)
                self.reject([entry.key])
        return out

    def ack(self, keys: list[str]) -> None:
        """Delete delivered violations."""
        with self._lock:
            for key in keys:
                entry = self._entries.pop(key, None)
                if entry is not None:
                    (self.directory / entry.filename).unlink(missing_ok=True)

    def reject(self, keys: list[str]) -> None:
        """Move violations the ingest API refused for good into ``rejected/``."""
        rejected = self.directory / REJECTED_DIR
        with self._lock:
            for key in keys:
                entry = self._entries.pop(key, None)
                if entry is not None:
                    source = self.directory / entry.filename
                    if source.exists():
                        source.replace(rejected / entry.filename)
            self._trim_rejected(rejected)

    def _trim_rejected(self, rejected: Path) -> None:
        # Dead letters are for inspection, not for filling the disk.
        names = sorted(p.name for p in rejected.iterdir())
        for name in names[: max(0, len(names) - REJECTED_MAX)]:
            (rejected / name).unlink(missing_ok=True)

    def _write(self, entry: SpoolEntry, violation: dict[str, Any]) -> None:
        final = self.directory / entry.filename
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(json.dumps(violation, separators=(",", ":")).encode())
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(final)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        # The rename is only durable once the directory entry is on disk.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _drop(self, entry: SpoolEntry) -> None:
        del self._entries[entry.key]
        (self.directory / entry.filename).unlink(missing_ok=True)
        self._count_drop(entry.severity)

    def _count_drop(self, severity: str) -> None:
        self.dropped[severity] += 1
        log.warning("violation spool full (%d): dropped a %s violation", self.max_entries, severity)
        if self._on_drop is not None:
            self._on_drop(severity)

    def _now_ns(self) -> int:
        # Strictly increasing, so file order is write order even within one clock tick.
        with self._lock:
            self._last_ns = max(self._clock_ns(), self._last_ns + 1)
            return self._last_ns

    def take_dropped(self) -> dict[str, int]:
        """Drops since the last call, by severity (for the next metrics report)."""
        with self._lock:
            taken = dict(self.dropped)
            self.dropped.clear()
        return taken

    def peek_dropped(self) -> dict[str, int]:
        """Drops not yet taken, by severity."""
        with self._lock:
            return dict(self.dropped)

    def undelivered(self) -> tuple[Counter[str], int | None]:
        """What is still spooled: a count by severity and the oldest entry's time (ns).

        From the index only: no file is read, so no content is touched.
        """
        with self._lock:
            entries = list(self._entries.values())
        by_severity = Counter(entry.severity for entry in entries)
        oldest = min((entry.created_ns for entry in entries), default=None)
        return by_severity, oldest
