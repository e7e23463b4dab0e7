"""What the reconcile reads (references from the watch-fed indexes, known children kept)
and how few status writes it needs on the way to Ready.

``objects.get`` is replaced by a recorder, so each test sees exactly which GETs a
reconcile would send to the API server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from promethios.api.policy import GovernancePolicySpec
from promethios.builders import BuildSettings
from promethios.controller import reconcile
from promethios.controller.context import ReconcileContext
from promethios.controller.handlers import (
    ALERT_SINKS,
    POLICY_SPECS,
    SECRET_KEYS,
    IndexedReferences,
)
from promethios.controller.informed import Store
from promethios.controller.observed import Observed
from promethios.controller.plan import plan_agent
from promethios.controller.reconcile import ApiReferences, observe

NS = "team-a"


class Gets:
    """Records GETs; answers from ``objects`` (kind, name) -> body, else 404 (None)."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.objects = objects or {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, client: Any, kind: str, namespace: str, name: str) -> Any:
        self.calls.append((kind, name))
        return self.objects.get((kind, name))


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> Gets:
    recorder = Gets(
        {
            ("GovernancePolicy", "default-policy"): {"spec": {}},
            ("Secret", "openai-credentials"): {"data": {"apiKey": "eA=="}},
            ("AlertSink", "ops"): {"spec": {}},
        }
    )
    monkeypatch.setattr(reconcile.objects, "get", recorder)
    return recorder


def indexes(**entries: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Handler kwargs holding the three reference indexes (key -> one-value store)."""
    return {
        name: {key: [value] for key, value in entries.get(name, {}).items()}
        for name in (POLICY_SPECS, SECRET_KEYS, ALERT_SINKS)
    }


def test_without_indexes_every_reference_and_child_is_read(gets: Gets, agent_factory: Any) -> None:
    agent = agent_factory(alertSinks=[{"name": "ops"}])
    observed = observe(None, agent, {})
    assert observed.policy is not None
    assert observed.provider_secret_keys == frozenset({"apiKey"})
    assert observed.missing_alert_sinks == ()
    assert [kind for kind, _ in gets.calls] == [
        "GovernancePolicy",
        "Secret",
        "AlertSink",
        "Secret",
        "ConfigMap",
        "Deployment",
        "Service",
    ]


def test_cached_references_cost_no_reads(gets: Gets, agent_factory: Any) -> None:
    agent = agent_factory(alertSinks=[{"name": "ops"}])
    kwargs = indexes(
        policy_specs={(NS, "default-policy"): {"blockedPatterns": []}},
        secret_keys={(NS, "openai-credentials"): frozenset({"apiKey"})},
        alert_sinks={(NS, "ops"): True},
    )
    references = IndexedReferences.of(ReconcileContext(client=None), kwargs)
    observed = observe(None, agent, {}, references)
    assert observed.policy is not None
    assert observed.provider_secret_keys == frozenset({"apiKey"})
    assert observed.missing_alert_sinks == ()
    assert [kind for kind, _ in gets.calls] == ["Secret", "ConfigMap", "Deployment", "Service"]


def test_a_reference_missing_from_the_cache_is_confirmed_by_a_get(
    gets: Gets, agent_factory: Any
) -> None:
    agent = agent_factory(alertSinks=[{"name": "ops"}, {"name": "gone"}])
    references = IndexedReferences.of(ReconcileContext(client=None), indexes())
    observed = observe(None, agent, {}, references)
    # Created a moment ago (not yet in the cache): found by the GET, not reported missing.
    assert observed.policy is not None
    assert observed.provider_secret_keys == frozenset({"apiKey"})
    assert observed.missing_alert_sinks == ("gone",)
    assert ("GovernancePolicy", "default-policy") in gets.calls
    assert ("AlertSink", "gone") in gets.calls


def test_a_known_deployment_is_not_read_again(gets: Gets, agent_factory: Any) -> None:
    agent = agent_factory()
    deployment = {"metadata": {"name": "support-bot"}, "status": {"readyReplicas": 1}}
    observed = observe(None, agent, {}, ApiReferences(None), {"Deployment": deployment})
    assert observed.live["Deployment"] is deployment
    assert ("Deployment", "support-bot") not in gets.calls
    other = {"metadata": {"name": "someone-else"}}
    observed = observe(None, agent, {}, ApiReferences(None), {"Deployment": other})
    assert observed.live["Deployment"] is None  # not this agent's child: read (404 here)
    assert ("Deployment", "support-bot") in gets.calls


def secret(name: str, labels: dict[str, str]) -> dict[str, Any]:
    metadata = {"namespace": NS, "name": name, "labels": labels, "resourceVersion": "7"}
    return {"kind": "Secret", "metadata": metadata, "data": {"apiKey": "eA=="}}


def test_the_operators_own_secrets_stay_out_of_the_reference_cache() -> None:
    store = Store("Secret")
    store.put(secret("plain", {}))
    store.put(secret("helm", {"app.kubernetes.io/managed-by": "Helm"}))
    store.put(secret("own", {"app.kubernetes.io/managed-by": "promethios-operator"}))
    assert list(store.get((NS, "plain"))) == [frozenset({"apiKey"})]
    assert list(store.get((NS, "helm"))) == [frozenset({"apiKey"})]
    assert list(store.get((NS, "own"))) == []  # a child: in the object cache instead
    assert store.body(NS, "own") is not None and store.body(NS, "plain") is None


def test_the_secret_informers_keys_answer_references_without_a_get(
    gets: Gets, agent_factory: Any
) -> None:
    store = Store("Secret")
    store.put(secret("openai-credentials", {}))
    ctx = ReconcileContext(client=None, secret_keys=store)
    kwargs = indexes(policy_specs={(NS, "default-policy"): {"blockedPatterns": []}})
    del kwargs[SECRET_KEYS]  # as kopf passes them now: no Secret index of its own
    references = IndexedReferences.of(ctx, kwargs)
    assert references.secret_keys(NS, "openai-credentials") == frozenset({"apiKey"})
    assert ("Secret", "openai-credentials") not in gets.calls


def test_the_status_written_with_a_new_deployment_already_describes_it(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    agent, policy, provider = agent_factory(), GovernancePolicySpec(), frozenset({"apiKey"})
    first = plan_agent(Observed(agent, policy, provider), BuildSettings(), now, keys)
    assert [m["kind"] for m in first.apply] == ["Secret", "ConfigMap", "Deployment", "Service"]
    assert first.status is not None
    assert (first.status["replicas"], first.status["readyReplicas"]) == (0, 0)
    ready = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["message"]) == ("False", "0/1 agent pods ready")
    # The watch event of the creation: the new objects, generation 1, no status yet.
    live = {m["kind"]: {**m, "metadata": {**m["metadata"], "generation": 1}} for m in first.apply}
    again = plan_agent(
        Observed(agent, policy, provider, (), live, first.status), BuildSettings(), now, keys
    )
    assert again.apply == [] and again.status is None  # no second status write


def test_a_known_deployment_older_than_one_already_read_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Watch events lag behind reads: planning from a Deployment older than the one the
    last reconcile read would take Ready back to False (seen live: True, False, True)."""
    ctx = ReconcileContext(client=None)
    ctx.deployment_rv[(NS, "support-bot")] = 351
    handed: list[Any] = []
    monkeypatch.setattr(reconcile.objects, "get_governed_agent", lambda *_: {"metadata": {}})
    monkeypatch.setattr(reconcile, "reconcile_agent", lambda *args: handed.append(args[3]))

    def deployment(rv: str) -> dict[str, Any]:
        return {"Deployment": {"metadata": {"name": "support-bot", "resourceVersion": rv}}}

    for rv in ("323", "351", "352", "not-a-number"):
        reconcile.reconcile_named(ctx, NS, "support-bot", None, deployment(rv))
    assert handed == [None, deployment("351"), deployment("352"), deployment("not-a-number")]
