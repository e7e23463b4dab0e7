"""The operator's side of issue 14 outside the plan: ``--external-ingest-url`` and the
critical-violation count an agent with ``rollbackOnBreach`` is watched for."""

from __future__ import annotations

from typing import Any

import pytest

from promethios.controller.options import parse_options
from promethios.controller.triggers import critical_count


def test_the_external_ingest_url_joins_the_certificate_names() -> None:
    options = parse_options(["--external-ingest-url=https://ingest.example.com:443"])
    assert options.external_ingest_url == "https://ingest.example.com:443"
    assert "ingest.example.com" in options.tls.extra_sans
    assert parse_options([]).external_ingest_url is None


def test_an_external_url_of_another_scheme_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--external-ingest-url=http://ingest.example.com"])
    assert "--external-ingest-url must use the scheme of --ingest-url" in capsys.readouterr().err


def body(rollback: bool, critical: int) -> dict[str, Any]:
    return {
        "spec": {"rollout": {"rollbackOnBreach": rollback}},
        "status": {"governance": {"violations": {"critical": critical}}},
    }


def test_only_agents_with_rollback_on_breach_are_watched_for_critical_violations() -> None:
    assert critical_count(body(True, 3)) == 3
    assert critical_count(body(True, 0)) == 0
    assert critical_count(body(False, 3)) is None
    assert critical_count({}) is None
