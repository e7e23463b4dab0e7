"""``promethios rollback``'s pure part: which revision, and the spec it writes back."""

from __future__ import annotations

from typing import Any

import pytest

from promethios.api.governedagent import GovernedAgentSpec
from promethios.api.policy import GovernancePolicySpec
from promethios.builders.revision import revision_data
from promethios.deploy.history import (
    RollbackError,
    commit_manifest,
    pick_target,
    policy_note,
    rolled_back,
    table,
)

SPEC = {
    "image": "reg.example/bot:2",
    "replicas": 3,
    "modelProvider": {"type": "openai"},
    "governance": {"policyRef": {"name": "p"}, "acknowledgedBreach": 2},
    "apiKey": {"rotation": 5},
}


def record(revision: int, digest: str, **extra: Any) -> dict[str, Any]:
    return {"revision": revision, "hash": digest, "image": f"img:{digest}", "policy": "p",
            "createdAt": "2025-01-01T00:00:00Z", "start": {"violations": 1, "breach": 0},
            **extra}  # fmt: skip


STATUS = {
    "revisions": [
        record(3, "c"),
        record(2, "b", supersededAt="x", violations=9, breaches=1, trustScore=0.4),
        record(1, "a", supersededAt="x", violations=0, breaches=0, trustScore=1.0),
    ],
    "rollout": {"revision": 3},
    "governance": {"violations": {"total": 4}, "trustScore": 0.9},
    "enforcement": {"breach": 1},
}


def test_the_default_target_is_the_previous_revision() -> None:
    assert pick_target(STATUS, None)["revision"] == 2
    assert pick_target(STATUS, 1)["revision"] == 1


def test_during_an_automatic_rollback_the_default_target_is_what_runs() -> None:
    pinned = {
        **STATUS,
        "revisions": [record(4, "a", restoredFrom=1, automatic=True), *STATUS["revisions"]],
        "rollout": {"revision": 4, "rolledBack": {"fromHash": "c", "toHash": "a"}},
    }
    assert pick_target(pinned, None)["revision"] == 4


def test_bad_targets_are_refused_with_a_reason() -> None:
    with pytest.raises(RollbackError, match=r"revision 7 is not in the history \(kept: 3, 2, 1\)"):
        pick_target(STATUS, 7)
    with pytest.raises(RollbackError, match="already asks for revision 3"):
        pick_target(STATUS, 3)
    with pytest.raises(RollbackError, match="no revision history"):
        pick_target({}, None)


def test_the_table_shows_what_each_revision_saw() -> None:
    lines = table(STATUS).splitlines()
    assert lines[0].split() == ["REVISION", "CREATED", "IMAGE", "POLICY", "VIOLATIONS",
                                "BREACHES", "TRUST", "NOTE"]  # fmt: skip
    current, second = lines[1].split(), lines[2].split()
    assert current[0] == "3" and current[4:7] == ["3", "1", "0.90"] and current[-1] == "running"
    assert second[0] == "2" and second[4:7] == ["9", "1", "0.40"]


def test_a_rollback_restores_the_revision_and_keeps_the_rest() -> None:
    policy = GovernancePolicySpec()
    old = GovernedAgentSpec.model_validate({**SPEC, "image": "reg.example/bot:1", "port": 9000})
    data = revision_data(old, "p", policy)
    body = {"apiVersion": "governance.promethios.ai/v1alpha1", "kind": "GovernedAgent",
            "metadata": {"name": "bot", "namespace": "ns", "resourceVersion": "42",
                         "managedFields": [{"manager": "argocd"}]},
            "spec": SPEC, "status": STATUS}  # fmt: skip
    restored = rolled_back(body, data)
    assert "status" not in restored and restored["metadata"]["resourceVersion"] == "42"
    assert "managedFields" not in restored["metadata"]  # the API server keeps its own
    spec = restored["spec"]
    assert (spec["image"], spec["port"]) == ("reg.example/bot:1", 9000)
    assert spec["replicas"] == 3 and spec["apiKey"]["rotation"] == 5
    assert spec["governance"]["acknowledgedBreach"] == 2
    manifest = commit_manifest(restored)
    assert manifest["metadata"] == {"name": "bot", "namespace": "ns"}
    assert manifest["spec"]["image"] == "reg.example/bot:1" and "sidecar" not in manifest["spec"]
    assert policy_note(data, {}) is None
    assert "other content" in str(policy_note(data, {"allowedModels": ["gpt-4o"]}))
