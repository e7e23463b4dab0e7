"""The durable, bounded violation spool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promethios.sidecar.spool import REJECTED_DIR, Spool, SpoolEntry


def violation(key: str, severity: str = "medium") -> dict[str, Any]:
    return {"type": "pii.email", "severity": severity, "idempotencyKey": key, "context": {}}


class Clock:
    def __init__(self) -> None:
        self.t = 1_000

    def __call__(self) -> int:
        self.t += 1_000
        return self.t


def spool(path: Path, max_entries: int = 10, drops: list[str] | None = None) -> Spool:
    on_drop = drops.append if drops is not None else None
    return Spool(path, max_entries, on_drop=on_drop, clock_ns=Clock())


def test_put_writes_one_file_and_pending_reads_it(tmp_path: Path) -> None:
    s = spool(tmp_path)
    assert s.put(violation("k1"))
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(files) == 1 and files[0].name.endswith("-1-k1.json")
    assert json.loads(files[0].read_text())["idempotencyKey"] == "k1"
    [(entry, body)] = s.pending(10)
    assert entry.key == "k1" and body["type"] == "pii.email"


def test_no_tmp_files_left_behind(tmp_path: Path) -> None:
    s = spool(tmp_path)
    for i in range(5):
        s.put(violation(f"k{i}"))
    assert not list(tmp_path.glob("*.tmp"))


def test_same_key_stored_once(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.put(violation("k"))
    s.put(violation("k"))
    assert len(s) == 1


def test_pending_is_oldest_first_and_limited(tmp_path: Path) -> None:
    s = spool(tmp_path)
    for i, sev in enumerate(["low", "critical", "medium"]):
        s.put(violation(f"k{i}", sev))
    assert [e.key for e, _ in s.pending(2)] == ["k0", "k1"]


def test_ack_deletes(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.put(violation("a"))
    s.put(violation("b"))
    s.ack(["a"])
    assert [e.key for e, _ in s.pending(10)] == ["b"]
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_reject_moves_to_rejected_dir(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.put(violation("bad"))
    s.reject(["bad"])
    assert len(s) == 0
    assert [p.name.endswith("-bad.json") for p in (tmp_path / REJECTED_DIR).iterdir()] == [True]


def test_survives_restart(tmp_path: Path) -> None:
    first = spool(tmp_path)
    first.put(violation("a", "high"))
    first.put(violation("b", "low"))
    (tmp_path / "junk.json.tmp").write_text("{")  # a write cut short by a crash
    second = spool(tmp_path)
    assert [e.key for e, _ in second.pending(10)] == ["a", "b"]
    assert not (tmp_path / "junk.json.tmp").exists()


def test_full_spool_drops_lowest_severity_oldest_first(tmp_path: Path) -> None:
    drops: list[str] = []
    s = spool(tmp_path, max_entries=4, drops=drops)
    for key, sev in [("h1", "high"), ("l1", "low"), ("m1", "medium"), ("l2", "low")]:
        s.put(violation(key, sev))
    s.put(violation("c1", "critical"))  # drops l1 (lowest, oldest)
    s.put(violation("m2", "medium"))  # drops l2
    s.put(violation("h2", "high"))  # drops m1 (oldest medium)
    keys = sorted(e.key for e, _ in s.pending(10))
    assert keys == ["c1", "h1", "h2", "m2"]
    assert drops == ["low", "low", "medium"]
    assert s.take_dropped() == {"low": 2, "medium": 1}
    assert s.take_dropped() == {}
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_new_violation_below_everything_is_the_one_dropped(tmp_path: Path) -> None:
    drops: list[str] = []
    s = spool(tmp_path, max_entries=2, drops=drops)
    s.put(violation("a", "high"))
    s.put(violation("b", "medium"))
    assert not s.put(violation("c", "low"))
    assert sorted(e.key for e, _ in s.pending(10)) == ["a", "b"]
    assert drops == ["low"]


def test_equal_severity_drops_the_oldest_not_the_new(tmp_path: Path) -> None:
    s = spool(tmp_path, max_entries=2)
    s.put(violation("a", "low"))
    s.put(violation("b", "low"))
    assert s.put(violation("c", "low"))
    assert sorted(e.key for e, _ in s.pending(10)) == ["b", "c"]


def test_shrunk_bound_applies_on_load(tmp_path: Path) -> None:
    big = spool(tmp_path, max_entries=10)
    for i, sev in enumerate(["low", "critical", "low", "high"]):
        big.put(violation(f"k{i}", sev))
    small = spool(tmp_path, max_entries=2)
    assert sorted(e.key for e, _ in small.pending(10)) == ["k1", "k3"]
    assert small.dropped == {"low": 2}


def test_peek_dropped_leaves_the_counts(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.dropped["high"] += 2
    assert s.peek_dropped() == {"high": 2}
    assert s.take_dropped() == {"high": 2} and s.peek_dropped() == {}


def test_undelivered_summary_reads_no_file(tmp_path: Path) -> None:
    s = spool(tmp_path)
    for key, severity in (("a", "high"), ("b", "high"), ("c", "low")):
        s.put(violation(key, severity))
    for path in tmp_path.glob("*.json"):
        path.write_text("not json: the summary must not read it")
    by_severity, oldest = s.undelivered()
    assert by_severity == {"high": 2, "low": 1}
    assert oldest == min(e.created_ns for e in s._entries.values())


def test_entry_filename_round_trip() -> None:
    entry = SpoolEntry(2, 123, "sc-a.b:c-d")
    assert SpoolEntry.parse(entry.filename) == entry
    assert SpoolEntry.parse("notes.txt") is None
    assert SpoolEntry.parse("1-9-x.json") is None


def test_unreadable_file_is_moved_aside(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.put(violation("a"))
    next(tmp_path.glob("*-a.json")).write_text("{not json")
    assert s.pending(10) == []
    assert len(s) == 0 and len(list((tmp_path / REJECTED_DIR).iterdir())) == 1
