"""Revision history, rollback on breach and ``runtime: External`` in the pure plan
(against ``World``, which here also keeps the ControllerRevisions a plan writes)."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from operator_fakes import World, apply_status, make_agent, with_server_defaults

from promethios.api import conditions as vocab
from promethios.api.policy import GovernancePolicySpec
from promethios.builders import BuildSettings
from promethios.builders import revision as revision_builders
from promethios.builders.revision import ANNOTATION_REVISION
from promethios.controller.observed import Observed, Plan
from promethios.controller.plan import plan_agent
from promethios.controller.revisions import ROLLBACK_UNAVAILABLE, hashes_to_read


class History(World):
    """World plus the ControllerRevisions (by hash) and the plan's settings."""

    def __init__(self, *args: Any, settings: BuildSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored: dict[str, dict[str, Any]] = {}
        self.settings = settings or BuildSettings()

    def observe(self) -> Observed:
        base = super().observe()
        wanted = hashes_to_read(self.agent, base.status, self.policy)
        revisions = {h: self.stored[h]["data"] for h in wanted if h in self.stored}
        return dataclasses.replace(base, revisions=revisions)

    def reconcile(self, now: datetime, keys: Any) -> Plan:
        observed = self.observe()
        plan = plan_agent(observed, self.settings, now, keys)
        # Reuse World's bookkeeping for children and status with the plan just made.
        self._apply(plan)
        for manifest in plan.revisions.apply:
            digest = manifest["metadata"]["name"].rsplit("-", 1)[1]
            self.stored[digest] = copy.deepcopy(manifest)
        for name in plan.revisions.delete:
            self.stored.pop(name.rsplit("-", 1)[1], None)
        return plan

    def _apply(self, plan: Plan) -> None:
        """World.reconcile's bookkeeping of children and status."""
        for manifest in plan.apply:
            self.live[manifest["kind"]] = with_server_defaults(manifest)
        for kind, _ in plan.delete:
            self.live[kind] = None
        if plan.scale_to is not None and self.live.get("Deployment"):
            self.live["Deployment"]["spec"]["replicas"] = plan.scale_to  # type: ignore[index]
        if plan.release is not None:
            self.status["enforcement"] = plan.release["status"]["enforcement"]
        if plan.status is not None:
            self.status = apply_status(self.status, plan.status)

    def image(self) -> str:
        deployment = self.live["Deployment"]
        assert deployment is not None
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def ingest_records(self, total: int, critical: int = 0, breach: int = 0) -> None:
        """What the ingest API would write: counts, trust and the breach counter."""
        self.status["governance"] = {
            "violations": {"total": total, "critical": critical},
            "trustScore": 0.6,
        }
        self.status["enforcement"] = {"action": "None", "breach": breach}


ROLLBACK = {"rollbackOnBreach": True, "rollbackWindowSeconds": 600}


def revisions(world: World) -> list[dict[str, Any]]:
    return list(world.status["revisions"])


def condition(world: World, type_: str) -> dict[str, Any]:
    return next(c for c in world.status["conditions"] if c["type"] == type_)


def carried_revision(world: World, kind: str = "Deployment") -> dict[str, Any]:
    annotations = world.live[kind]["metadata"]["annotations"]  # type: ignore[index]
    return dict(json.loads(annotations[ANNOTATION_REVISION]))


def test_the_first_reconcile_records_revision_one_and_its_deployment_carries_the_spec(
    now: datetime, keys: Any
) -> None:
    world = History(make_agent())
    plan = world.reconcile(now, keys)
    (record,) = revisions(world)
    assert record["revision"] == 1 and record["image"] == "example.com/agent:1.0"
    assert record["policy"] == "default-policy" and record["createdAt"] == "2025-01-01T12:00:00Z"
    assert record["start"] == {"violations": 0, "critical": 0, "breach": 0}
    assert world.status["rollout"] == {"revision": 1}
    # No ControllerRevision yet: nothing can roll back to the only revision.
    assert plan.revisions.apply == []
    carried = carried_revision(world)
    assert carried["hash"] == record["hash"]
    assert carried["data"]["spec"]["image"] == "example.com/agent:1.0"
    assert "replicas" not in carried["data"]["spec"] and "apiKey" not in carried["data"]["spec"]
    assert carried["data"]["policy"]["name"] == "default-policy"


def test_revision_two_stores_revision_one_from_what_its_deployment_carried(
    now: datetime, keys: Any
) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    first = revisions(world)[0]
    carried = carried_revision(world)
    world.agent = make_agent(generation=2, image="example.com/agent:2.0")
    plan = world.reconcile(now + timedelta(hours=1), keys)
    (stored,) = plan.revisions.apply
    assert stored["kind"] == "ControllerRevision" and stored["revision"] == 1
    assert stored["metadata"]["name"] == f"support-bot-{first['hash']}"
    assert stored["data"] == carried["data"]
    assert stored["metadata"]["ownerReferences"][0]["kind"] == "GovernedAgent"
    assert carried_revision(world)["hash"] == revisions(world)[0]["hash"] != first["hash"]


def test_an_edited_carried_revision_is_not_stored(now: datetime, keys: Any) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    deployment = world.live["Deployment"]
    assert deployment is not None
    carried = carried_revision(world)
    carried["data"]["spec"]["image"] = "evil.example/agent:1"
    deployment["metadata"]["annotations"][ANNOTATION_REVISION] = json.dumps(carried)
    world.agent = make_agent(generation=2, image="example.com/agent:2.0")
    plan = world.reconcile(now, keys)
    # Its content no longer hashes to revision 1: a rollback to it says it is unavailable.
    assert plan.revisions.apply == [] and world.stored == {}


def test_a_forged_carried_revision_with_its_own_hash_is_not_stored(
    now: datetime, keys: Any
) -> None:
    """A user who may edit the Deployment rewrites the carried revision whole, data and a
    hash recomputed to match: it is not revision 1 (whose hash the status recorded)."""
    world = History(make_agent())
    world.reconcile(now, keys)
    deployment = world.live["Deployment"]
    assert deployment is not None
    forged = carried_revision(world)
    forged["data"]["spec"]["image"] = "evil.example/agent:1"
    forged["hash"] = revision_builders.revision_hash(forged["data"])
    deployment["metadata"]["annotations"][ANNOTATION_REVISION] = json.dumps(forged)
    world.agent = make_agent(generation=2, image="example.com/agent:2.0")
    plan = world.reconcile(now, keys)
    assert plan.revisions.apply == [] and world.stored == {}
    assert all(r["hash"] != forged["hash"] for r in revisions(world))


def test_revision_data_too_large_to_carry_is_stored_at_once(
    now: datetime, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revision_builders, "MAX_ANNOTATED_BYTES", 10)
    world = History(make_agent())
    plan = world.reconcile(now, keys)
    (stored,) = plan.revisions.apply
    assert stored["revision"] == 1 and stored["data"]["spec"]["image"] == "example.com/agent:1.0"
    deployment = world.live["Deployment"]
    assert deployment is not None
    assert ANNOTATION_REVISION not in deployment["metadata"]["annotations"]
    world.agent = make_agent(generation=2, image="example.com/agent:2.0")
    plan = world.reconcile(now, keys)
    assert [m["revision"] for m in plan.revisions.apply] == [2]


def test_a_converged_agent_writes_no_revision(now: datetime, keys: Any) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    world.reconcile(now, keys)
    again = world.reconcile(now + timedelta(minutes=5), keys)
    assert again.writes_nothing and again.revisions.apply == []


def test_a_new_image_starts_revision_two_and_freezes_what_revision_one_saw(
    now: datetime, keys: Any
) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    world.ingest_records(total=4, critical=1, breach=1)
    world.agent = make_agent(generation=2, image="example.com/agent:2.0")
    later = now + timedelta(hours=1)
    plan = world.reconcile(later, keys)
    new, old = revisions(world)
    assert new["revision"] == 2 and new["image"] == "example.com/agent:2.0"
    assert new["start"] == {"violations": 4, "critical": 1, "breach": 1}
    assert old["supersededAt"] == "2025-01-01T13:00:00Z"
    assert (old["violations"], old["breaches"], old["trustScore"]) == (4, 1, 0.6)
    assert [m["revision"] for m in plan.revisions.apply] == [1]  # the one superseded
    assert world.image() == "example.com/agent:2.0"


def test_replicas_suspend_rotation_and_acknowledgement_are_not_revisions(
    now: datetime, keys: Any
) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    world.agent = make_agent(
        generation=2,
        replicas=3,
        suspend=True,
        apiKey={"rotation": 1},
        governance={"policyRef": {"name": "default-policy"}, "acknowledgedBreach": 4},
    )
    plan = world.reconcile(now, keys)
    assert plan.revisions.apply == [] and len(revisions(world)) == 1


def test_a_policy_change_is_a_new_revision(now: datetime, keys: Any) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    world.policy = GovernancePolicySpec.model_validate({"allowedModels": ["gpt-4o"]})
    world.reconcile(now, keys)
    assert [r["revision"] for r in revisions(world)] == [2, 1]


def test_the_history_is_bounded_and_pruned_revisions_are_deleted(now: datetime, keys: Any) -> None:
    world = History(make_agent(rollout={"revisionHistoryLimit": 2}))
    world.reconcile(now, keys)
    first = revisions(world)[0]["hash"]
    for version in (2, 3):
        world.agent = make_agent(
            generation=version,
            image=f"example.com/agent:{version}",
            rollout={"revisionHistoryLimit": 2},
        )
        plan = world.reconcile(now, keys)
    assert [r["revision"] for r in revisions(world)] == [3, 2]
    assert plan.revisions.delete == [f"support-bot-{first}"]
    # Revision 2 is stored; revision 3, the running one, rides on its Deployment.
    assert first not in world.stored and len(world.stored) == 1
    assert carried_revision(world)["hash"] == revisions(world)[0]["hash"]


def test_going_back_to_an_earlier_spec_records_the_restoration(now: datetime, keys: Any) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    world.agent = make_agent(generation=2, image="example.com/agent:2.0")
    world.reconcile(now, keys)
    world.agent = make_agent(generation=3)  # what `promethios rollback` writes
    world.reconcile(now, keys)
    newest = revisions(world)[0]
    assert newest["revision"] == 3 and newest["restoredFrom"] == 1 and "automatic" not in newest


def rolled_out_twice(now: datetime, keys: Any, rollout: dict[str, Any] = ROLLBACK) -> History:
    """Revision 1 (image 1.0), then revision 2 (image 2.0) at ``now``."""
    world = History(make_agent(rollout=rollout))
    world.reconcile(now - timedelta(hours=2), keys)
    world.agent = make_agent(generation=2, image="example.com/agent:2.0", rollout=rollout)
    world.reconcile(now, keys)
    world.deployment_becomes_ready()
    return world


def test_a_breach_within_the_window_rolls_the_new_revision_back(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys)
    world.ingest_records(total=1, critical=1, breach=1)
    plan = world.reconcile(now + timedelta(minutes=5), keys)
    assert world.image() == "example.com/agent:1.0"  # the spec still says 2.0
    assert world.agent.spec.image == "example.com/agent:2.0"
    newest = revisions(world)[0]
    assert (newest["revision"], newest["restoredFrom"], newest["automatic"]) == (3, 1, True)
    pin = world.status["rollout"]["rolledBack"]
    assert (pin["fromRevision"], pin["toRevision"], pin["breach"]) == (2, 1, 1)
    degraded = condition(world, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", vocab.ROLLED_BACK)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", vocab.ROLLED_BACK)]
    # It holds: later reconciles keep revision 1's spec and write nothing new.
    again = world.reconcile(now + timedelta(minutes=6), keys)
    assert world.image() == "example.com/agent:1.0" and again.events == []
    assert again.revisions.apply == [] and len(revisions(world)) == 3


def test_a_critical_violation_rolls_back_while_an_earlier_breach_holds_the_counter(
    now: datetime, keys: Any
) -> None:
    world = rolled_out_twice(now, keys)
    world.ingest_records(total=3, critical=1, breach=1)
    world.agent = make_agent(generation=3, image="example.com/agent:3.0", rollout=ROLLBACK)
    world.reconcile(now + timedelta(minutes=1), keys)
    world.ingest_records(total=4, critical=2, breach=1)  # outstanding breach: counter stays
    world.reconcile(now + timedelta(minutes=2), keys)
    assert world.image() == "example.com/agent:2.0"


def test_a_breach_after_the_window_does_not_roll_back(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys)
    world.ingest_records(total=1, critical=1, breach=1)
    world.reconcile(now + timedelta(seconds=601), keys)
    assert world.image() == "example.com/agent:2.0" and "rolledBack" not in world.status["rollout"]


def test_without_rollback_on_breach_nothing_rolls_back(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys, rollout={})
    world.ingest_records(total=1, critical=1, breach=1)
    world.reconcile(now + timedelta(minutes=1), keys)
    assert world.image() == "example.com/agent:2.0"


def test_a_restored_revision_is_never_rolled_back_again(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys)
    world.ingest_records(total=1, critical=1, breach=1)
    world.reconcile(now + timedelta(minutes=1), keys)
    world.ingest_records(total=2, critical=2, breach=2)
    plan = world.reconcile(now + timedelta(minutes=2), keys)
    assert world.image() == "example.com/agent:1.0" and plan.events == []


def test_a_spec_change_ends_the_rollback(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys)
    world.ingest_records(total=1, critical=1, breach=1)
    world.reconcile(now + timedelta(minutes=1), keys)
    world.agent = make_agent(generation=3, image="example.com/agent:2.1", rollout=ROLLBACK)
    world.reconcile(now + timedelta(minutes=2), keys)
    assert world.image() == "example.com/agent:2.1"
    assert "rolledBack" not in world.status["rollout"]
    assert condition(world, "Degraded")["status"] == "False"
    assert revisions(world)[0]["revision"] == 4


def test_a_replica_change_keeps_the_rollback(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys)
    world.ingest_records(total=1, critical=1, breach=1)
    world.reconcile(now + timedelta(minutes=1), keys)
    world.agent = make_agent(
        generation=3, image="example.com/agent:2.0", rollout=ROLLBACK, replicas=4
    )
    world.reconcile(now + timedelta(minutes=2), keys)
    assert world.image() == "example.com/agent:1.0"
    assert world.live["Deployment"]["spec"]["replicas"] == 4  # type: ignore[index]


def test_a_missing_controller_revision_keeps_the_spec_and_says_so(now: datetime, keys: Any) -> None:
    world = rolled_out_twice(now, keys)
    world.stored.clear()
    world.ingest_records(total=1, critical=1, breach=1)
    plan = world.reconcile(now + timedelta(minutes=1), keys)
    assert world.image() == "example.com/agent:2.0"
    assert [e.reason for e in plan.events] == [ROLLBACK_UNAVAILABLE]


def test_a_blocked_agent_keeps_its_history(now: datetime, keys: Any) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    history = revisions(world)
    world.policy = None  # type: ignore[assignment]
    world.reconcile(now, keys)
    assert condition(world, "Ready")["reason"] == vocab.POLICY_NOT_FOUND
    assert world.status["revisions"] == history


# -- runtime: External ---------------------------------------------------------------------


def test_an_external_agent_gets_its_key_and_config_but_no_workload(
    now: datetime, keys: Any
) -> None:
    settings = BuildSettings(external_ingest_url="https://ingest.example.com")
    world = History(make_agent(runtime="External"), settings=settings)
    plan = world.reconcile(now, keys)
    assert sorted(m["kind"] for m in plan.apply) == ["ConfigMap", "Secret"]
    ready = condition(world, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", vocab.EXTERNAL_RUNTIME)
    assert condition(world, "Progressing")["status"] == "False"
    assert world.status["children"] == {
        "secret": "support-bot-api-key",
        "configMap": "support-bot-governance",
    }
    assert "replicas" not in world.status
    config = world.live["ConfigMap"]["data"]["config.json"]  # type: ignore[index]
    assert '"url": "https://ingest.example.com"' in config
    assert world.reconcile(now, keys).writes_nothing


def test_a_pod_agent_keeps_the_in_cluster_ingest_url(now: datetime, keys: Any) -> None:
    settings = BuildSettings(external_ingest_url="https://ingest.example.com")
    world = History(make_agent(), settings=settings)
    world.reconcile(now, keys)
    config = world.live["ConfigMap"]["data"]["config.json"]  # type: ignore[index]
    assert f'"url": "{settings.ingest_url}"' in config


def test_moving_an_agent_out_of_the_cluster_deletes_its_workload(now: datetime, keys: Any) -> None:
    world = History(make_agent())
    world.reconcile(now, keys)
    world.agent = make_agent(generation=2, runtime="External")
    plan = world.reconcile(now, keys)
    assert sorted(plan.delete) == [("Deployment", "support-bot"), ("Service", "support-bot")]
    back = make_agent(generation=3)
    world.agent = back
    plan = world.reconcile(now, keys)
    # The ConfigMap carried the External revision; now the Deployment carries it.
    assert sorted(m["kind"] for m in plan.apply) == ["ConfigMap", "Deployment", "Service"]
    assert ANNOTATION_REVISION not in world.live["ConfigMap"]["metadata"]["annotations"]  # type: ignore[index]
