"""Writes refused because their namespace is being deleted are told apart from faults:
the operator logs one line for them, not a traceback (a namespace deleted while its
agents are reconciled is routine: every real-pod test module does it)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from promethios.controller import reconcile
from promethios.kube import apply as kapply


def refused(status: int, reason: str, cause: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    body = {"kind": "Status", "status": "Failure", "reason": reason, "code": status,
            "details": {"causes": [{"reason": cause, "message": "..."}]}}  # fmt: skip
    error.body = json.dumps(body)
    return error


def test_a_write_into_a_terminating_namespace_is_recognised() -> None:
    assert kapply.namespace_terminating(refused(403, "Forbidden", "NamespaceTerminating"))


@pytest.mark.parametrize(
    "error",
    [
        refused(403, "Forbidden", "FieldValueForbidden"),  # RBAC or admission: a fault
        refused(409, "Conflict", "NamespaceTerminating"),
        ValueError("NamespaceTerminating"),  # not from the API server
    ],
)
def test_other_refusals_are_not(error: BaseException) -> None:
    assert not kapply.namespace_terminating(error)


class Ctx:
    client: Any = None


BODY = {"metadata": {"name": "bot", "namespace": "going"}}


def test_an_event_refused_in_a_terminating_namespace_logs_no_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def post_event(*args: Any) -> None:
        raise refused(403, "Forbidden", "NamespaceTerminating")

    monkeypatch.setattr(kapply, "post_event", post_event)
    with caplog.at_level(logging.INFO, logger=reconcile.log.name):
        reconcile._post_event(Ctx(), BODY, "Normal", "Applied", "...", "now")  # type: ignore[arg-type]
    (record,) = caplog.records
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "being deleted" in record.getMessage()


def test_an_event_refused_otherwise_is_logged_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def post_event(*args: Any) -> None:
        raise refused(403, "Forbidden", "FieldValueForbidden")

    monkeypatch.setattr(kapply, "post_event", post_event)
    with caplog.at_level(logging.INFO, logger=reconcile.log.name):
        reconcile._post_event(Ctx(), BODY, "Normal", "Applied", "...", "now")  # type: ignore[arg-type]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is not None
