"""Pure condition logic: transitions, readiness from a Deployment, blockers."""

from __future__ import annotations

from typing import Any

from promethios.api import conditions as vocab
from promethios.controller import conditions as cond
from promethios.controller.conditions import Blocker, ConditionValue, Rollout

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:05:00Z"


def test_set_condition_adds_a_new_condition() -> None:
    result = cond.set_condition([], "Ready", ConditionValue("True", "Ok", "fine"), T0, 3)
    assert result == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ok",
            "message": "fine",
            "lastTransitionTime": T0,
            "observedGeneration": 3,
        }
    ]


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    first = cond.set_condition([], "Ready", ConditionValue("False", "A", "a"), T0)
    second = cond.set_condition(first, "Ready", ConditionValue("False", "B", "b"), T1)
    assert second[0]["lastTransitionTime"] == T0
    assert second[0]["reason"] == "B" and second[0]["message"] == "b"


def test_set_condition_moves_transition_time_when_status_changes() -> None:
    first = cond.set_condition([], "Ready", ConditionValue("False", "A"), T0)
    second = cond.set_condition(first, "Ready", ConditionValue("True", "A"), T1)
    assert second[0]["lastTransitionTime"] == T1


def test_set_condition_leaves_other_conditions_alone() -> None:
    ingest = {
        "type": "HeartbeatFresh",
        "status": "True",
        "reason": "Fresh",
        "lastTransitionTime": T0,
        "message": "",
    }
    result = cond.set_condition([ingest], "Ready", ConditionValue("True", "Ok"), T1)
    assert result[0] == ingest
    assert [c["type"] for c in result] == ["HeartbeatFresh", "Ready"]


def test_owned_conditions_never_include_ingest_conditions() -> None:
    current = [
        {"type": "PolicyCompliant", "status": "True", "reason": "X", "lastTransitionTime": T0}
    ]
    values = cond.desired_conditions(None, Rollout(exists=False, desired=0))
    owned = cond.owned_conditions(current, values, T1, 1)
    assert [c["type"] for c in owned] == ["Ready", "Progressing", "Degraded"]


def deployment(
    replicas: int = 1, ready: int = 1, generation: int = 2, observed: int = 2, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            **status,
        },
    }


def test_rollout_of_missing_deployment() -> None:
    assert cond.rollout_of(None) == Rollout(exists=False, desired=0)


def test_ready_when_every_pod_is_ready() -> None:
    values = cond.desired_conditions(None, cond.rollout_of(deployment(2, 2)))
    assert values["Ready"] == ConditionValue("True", vocab.AVAILABLE, "2/2 agent pods ready")
    assert values["Progressing"].status == "False"
    assert values["Progressing"].reason == vocab.ROLLOUT_COMPLETE
    assert values["Degraded"].status == "False"


def test_not_ready_while_pods_start() -> None:
    values = cond.desired_conditions(None, cond.rollout_of(deployment(2, 1)))
    assert values["Ready"].status == "False" and values["Ready"].reason == vocab.PODS_NOT_READY
    assert values["Progressing"] == ConditionValue(
        "True", vocab.ROLLING_OUT, "2/2 pods updated, 1 available"
    )


def test_not_ready_until_the_deployment_controller_observed_the_spec() -> None:
    values = cond.desired_conditions(None, cond.rollout_of(deployment(observed=1)))
    assert values["Ready"].status == "False"
    assert values["Progressing"].status == "True"


def test_old_pods_still_terminating_means_progressing() -> None:
    rollout = cond.rollout_of(deployment(1, 1))
    assert rollout.complete
    assert not Rollout(
        True, 1, replicas=2, updated=1, ready=1, available=1, observed_current=True
    ).complete


def test_scaled_to_zero_is_ready() -> None:
    values = cond.desired_conditions(None, cond.rollout_of(deployment(0, 0)))
    assert values["Ready"] == ConditionValue(
        "True", vocab.SCALED_TO_ZERO, "the agent is scaled to zero replicas"
    )


def test_progress_deadline_exceeded_is_degraded() -> None:
    failing = deployment(
        1,
        0,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    values = cond.desired_conditions(None, cond.rollout_of(failing))
    assert values["Degraded"].status == "True"
    assert values["Degraded"].reason == vocab.DEADLINE_EXCEEDED


def test_a_missing_reference_blocks_every_condition() -> None:
    blocker = Blocker(vocab.POLICY_NOT_FOUND, "GovernancePolicy ns/p not found")
    values = cond.desired_conditions(blocker, cond.rollout_of(deployment()))
    assert values["Ready"] == ConditionValue("False", vocab.POLICY_NOT_FOUND, blocker.message)
    assert values["Progressing"].status == "False"
    assert values["Degraded"] == ConditionValue("True", vocab.POLICY_NOT_FOUND, blocker.message)


def test_suspend_is_not_degraded() -> None:
    blocker = Blocker(vocab.SUSPENDED, "suspended", degraded=False)
    values = cond.desired_conditions(blocker, cond.rollout_of(deployment()))
    assert values["Ready"].status == "False" and values["Ready"].reason == vocab.SUSPENDED
    assert values["Degraded"] == ConditionValue("False", vocab.AS_EXPECTED, "")


def test_format_time_is_rfc3339_utc() -> None:
    from datetime import datetime, timedelta, timezone

    moment = datetime(2025, 1, 1, 13, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert vocab.format_time(moment) == "2025-01-01T12:00:00Z"


def test_transition_time_moves_only_when_the_status_changes() -> None:
    from promethios.api.conditions import transition_time

    assert transition_time("True", T0, "True", T1) == T0
    assert transition_time("True", T0, "False", T1) == T1
    assert transition_time(None, None, "True", T1) == T1
    assert transition_time("True", None, "True", T1) == T1
    assert transition_time("True", 10.0, "True", 20.0) == 10.0


def test_parse_time_round_trips_format_time() -> None:
    from datetime import UTC, datetime

    from promethios.api.conditions import format_time, parse_time

    moment = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment
    assert parse_time("2025-01-01T12:00:00") == moment  # naive means UTC
    assert parse_time("2025-01-01T13:00:00+01:00") == moment
    assert parse_time("not a time") is None
    assert parse_time("") is None
    assert parse_time(None) is None


# -- GovernancePolicy.status (the operator's) ---------------------------------------------


def test_policy_status_names_the_invalid_field_and_is_written_once() -> None:
    from datetime import UTC, datetime

    from promethios.controller.policystatus import desired_status

    now = datetime(2026, 1, 1, tzinfo=UTC)
    body: dict[str, object] = {
        "metadata": {"namespace": "ns", "name": "p", "generation": 2},
        "spec": {"blockedPatterns": [{"name": "bad", "pattern": "(unclosed"}]},
    }
    status = desired_status(body, now)
    assert status is not None and status["observedGeneration"] == 2
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.blockedPatterns.0.pattern" in ready["message"]
    assert desired_status({**body, "status": status}, now) is None  # nothing new: no write
    fixed = {**body, "metadata": {**body["metadata"], "generation": 3},  # type: ignore[dict-item]
             "spec": {}, "status": status}  # fmt: skip
    again = desired_status(fixed, now)
    assert again is not None and again["conditions"][0]["reason"] == "Valid"
