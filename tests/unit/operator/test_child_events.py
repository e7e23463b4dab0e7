"""What an informer's event on a child or a Secret means (:mod:`promethios.controller.childevents`),
including what a namespace user forging labels and names can (not) make of it."""

from __future__ import annotations

from typing import Any

import pytest

from promethios.api.metadata import LABEL_AGENT
from promethios.builders.meta import ChildNames
from promethios.controller.childevents import ChildEvent, Dispatch, decide, keeps_body
from promethios.controller.informed import Store

MANAGED = {"app.kubernetes.io/managed-by": "promethios-operator"}
NS = "team-a"


def event(
    kind: str, type_: str, name: str, agent: str | None = None, managed: bool = True
) -> ChildEvent:
    labels = dict(MANAGED) if managed else {}
    if agent is not None:
        labels[LABEL_AGENT] = agent
    return ChildEvent(kind, type_, NS, name, labels)


def test_a_managed_deployment_reconciles_its_agent_with_the_deployment_known() -> None:
    changed = decide(event("Deployment", "MODIFIED", "billing", agent="billing"))
    assert changed == Dispatch(reconcile=("billing",), known_deployment=True, defer_progress=True)
    assert changed.needs_body
    gone = decide(event("Deployment", "DELETED", "billing", agent="billing"))
    assert gone.reconcile == ("billing",) and not gone.known_deployment and not gone.needs_body


@pytest.mark.parametrize(
    ("name", "agent", "managed"),
    [
        ("impostor", "billing", True),  # labelled as billing's, named otherwise
        ("billing", "billing", False),  # named as billing's, not labelled managed
        ("billing", None, True),  # no agent label
    ],
)
def test_a_deployment_that_is_not_an_agents_child_triggers_nothing(
    name: str, agent: str | None, managed: bool
) -> None:
    for type_ in ("ADDED", "MODIFIED", "DELETED"):
        assert decide(event("Deployment", type_, name, agent=agent, managed=managed)).nothing


def test_only_a_managed_pod_that_changed_or_went_is_reported() -> None:
    assert decide(event("Pod", "MODIFIED", "billing-abc")).report_pod
    assert decide(event("Pod", "DELETED", "billing-abc")).report_pod
    assert decide(event("Pod", "ADDED", "billing-abc")).nothing
    assert decide(event("Pod", "DELETED", "billing-abc", managed=False)).nothing


@pytest.mark.parametrize(
    ("kind", "name"), [("ConfigMap", "billing-governance"), ("Service", "billing")]
)
def test_a_deleted_child_reconciles_its_owner_only_when_named_as_its_child(
    kind: str, name: str
) -> None:
    assert decide(event(kind, "DELETED", name, agent="billing")).reconcile == ("billing",)
    assert decide(event(kind, "MODIFIED", name, agent="billing")).nothing
    assert decide(event(kind, "DELETED", "other", agent="billing")).nothing
    assert decide(event(kind, "DELETED", name, agent="billing", managed=False)).nothing


def test_every_secret_event_reconciles_its_dependents_and_a_deleted_child_its_owner() -> None:
    for type_ in ("ADDED", "MODIFIED", "DELETED"):
        plain = decide(event("Secret", type_, "credentials", managed=False))
        assert plain == Dispatch(referencing=True)
    name = ChildNames.of("billing").secret
    child = decide(event("Secret", "DELETED", name, agent="billing"))
    assert child == Dispatch(reconcile=("billing",), referencing=True)
    assert decide(event("Secret", "DELETED", name, agent="billing", managed=False)).reconcile == ()
    assert decide(event("Secret", "MODIFIED", name, agent="billing")).reconcile == ()
    # A Secret carries its data: its work never holds the object, only its key.
    assert not child.needs_body and not decide(event("Secret", "MODIFIED", "x")).needs_body


def test_network_policies_are_cached_only() -> None:
    for type_ in ("ADDED", "MODIFIED", "DELETED"):
        assert decide(event("NetworkPolicy", type_, "billing-quarantine", agent="billing")).nothing


def test_the_event_of_a_forged_child_names_an_agent_of_its_own_namespace_only() -> None:
    body: dict[str, Any] = {
        "metadata": {
            "namespace": "mallory",
            "name": "victim",
            "labels": {**MANAGED, LABEL_AGENT: "victim"},
        }
    }
    seen = ChildEvent.of("Deployment", "MODIFIED", body)
    assert seen.namespace == "mallory"  # the reconcile is of mallory/victim, never team-a's
    assert decide(seen).reconcile == ("victim",)


def test_only_managed_children_keep_a_body() -> None:
    assert keeps_body("Deployment", MANAGED) and keeps_body("Secret", MANAGED)
    assert not keeps_body("Secret", {}) and not keeps_body("Pod", MANAGED)


def test_a_secrets_values_are_never_kept_unless_it_is_a_managed_child() -> None:
    store = Store("Secret")
    value = "c2stdmVyeS1zZWNyZXQ="  # base64 of a provider key
    body = {
        "metadata": {"namespace": NS, "name": "credentials", "resourceVersion": "3"},
        "data": {"apiKey": value},
    }
    store.put(body)
    kept = [entry for _, entry in store._entries.values()]
    assert kept == [frozenset({"apiKey"})]
    assert value not in repr(kept)
