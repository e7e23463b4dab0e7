"""The termination summary: counts and times only, and where it is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promethios.sidecar import termination
from promethios.sidecar.spool import Spool
from promethios.sidecar.termination import summarize, write_summary


def test_summary_counts_both_spools_and_unconfirmed_drops(tmp_path: Path) -> None:
    own, agent = Spool(tmp_path / "own", 10), Spool(tmp_path / "agent", 10)
    secret = {"excerpt": "jane.doe@example.com"}
    own.put({"type": "pii.email", "severity": "high", "idempotencyKey": "a", "context": secret})
    agent.put({"type": "x", "severity": "low", "idempotencyKey": "b", "context": secret})
    summary = summarize([own, agent], {"medium": 4})
    text = summary.model_dump_json(by_alias=True)
    body = json.loads(text)
    assert body["undeliveredViolations"] == 2
    assert body["undeliveredBySeverity"] == {"high": 1, "low": 1}
    assert body["oldestUndelivered"].endswith("Z")
    assert body["droppedViolations"] == 4 and body["droppedViolationsBySeverity"] == {"medium": 4}
    assert "jane" not in text and "pii" not in text


def test_default_path_is_written_only_where_the_kubelet_made_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "termination-log"
    monkeypatch.setattr(termination, "DEFAULT_TERMINATION_MESSAGE_PATH", str(default))
    summary = summarize([], {})
    assert not write_summary(str(default), summary) and not default.exists()
    default.touch()
    assert write_summary(str(default), summary)
    assert json.loads(default.read_text())["undeliveredViolations"] == 0
    elsewhere = tmp_path / "chosen" / "summary.json"
    assert not write_summary(str(elsewhere), summary)  # its directory is missing: a warning
