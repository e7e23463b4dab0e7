"""The handler logic the informers' work runs (:func:`handlers.handle_child`), what kopf
still watches, and how an informer recovers from an expired watch."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from promethios.api.metadata import LABEL_AGENT
from promethios.builders.meta import ChildNames
from promethios.controller import handlers
from promethios.controller.childevents import ChildEvent, decide
from promethios.controller.context import ReconcileContext
from promethios.controller.informers import Work
from promethios.kube import informer

MANAGED = {"app.kubernetes.io/managed-by": "promethios-operator"}
NS = "team-a"


class Reconciles:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, bool]] = []

    def __call__(
        self, ctx: Any, namespace: str, name: str, refs: Any, known: Any, defer: bool
    ) -> None:
        self.calls.append((namespace, name, known, defer))


@pytest.fixture
def reconciles(monkeypatch: pytest.MonkeyPatch) -> Reconciles:
    recorder = Reconciles()
    monkeypatch.setattr(handlers, "reconcile_named", recorder)
    return recorder


def indexes(agents_by_reference: dict[Any, list[str]]) -> dict[str, Any]:
    return {
        handlers.INDEX: agents_by_reference,
        handlers.POLICY_SPECS: {},
        handlers.ALERT_SINKS: {},
    }


def work(kind: str, type_: str, body: dict[str, Any]) -> Work:
    event = ChildEvent.of(kind, type_, body)
    dispatch = decide(event)
    return Work(event, dispatch, body if dispatch.needs_body else None)


def meta(name: str, ns: str = NS, **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels, "resourceVersion": "5"}}


def test_a_changed_secret_reconciles_the_agents_referring_to_it(reconciles: Reconciles) -> None:
    refs = indexes({("Secret", NS, "credentials"): ["b", "a"], ("Secret", "other", "x"): ["c"]})
    ctx = ReconcileContext(client=None)
    handlers.handle_child(ctx, refs, work("Secret", "MODIFIED", meta("credentials")))
    assert [(ns, name) for ns, name, _, _ in reconciles.calls] == [(NS, "a"), (NS, "b")]


def test_a_deployment_event_hands_the_live_deployment_to_its_agents_reconcile(
    reconciles: Reconciles,
) -> None:
    body = {**meta("billing", **MANAGED, **{LABEL_AGENT: "billing"}), "status": {"replicas": 1}}
    ctx = ReconcileContext(client=None)
    handlers.handle_child(ctx, indexes({}), work("Deployment", "MODIFIED", body))
    handlers.handle_child(ctx, indexes({}), work("Deployment", "DELETED", body))
    (ns, name, known, defer), (_, _, gone, _) = reconciles.calls
    assert (ns, name, defer) == (NS, "billing", True)
    assert known == {"Deployment": body} and not gone


def test_a_forged_child_in_one_namespace_never_reconciles_another_namespaces_agent(
    reconciles: Reconciles,
) -> None:
    ctx = ReconcileContext(client=None)
    labels = {**MANAGED, LABEL_AGENT: "billing"}
    for kind, name in (("ConfigMap", "billing-governance"), ("Service", "billing")):
        handlers.handle_child(
            ctx, indexes({}), work(kind, "DELETED", meta(name, "mallory", **labels))
        )
    secret = ChildNames.of("billing").secret
    handlers.handle_child(
        ctx, indexes({}), work("Secret", "DELETED", meta(secret, "mallory", **labels))
    )
    assert {ns for ns, _, _, _ in reconciles.calls} == {"mallory"}


def test_a_stopped_pod_is_reported_and_never_reconciled(
    reconciles: Reconciles, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[str] = []
    monkeypatch.setattr(
        handlers, "_report_undelivered", lambda ctx, pod: reported.append(pod["metadata"]["name"])
    )
    ctx = ReconcileContext(client=None)
    handlers.handle_child(ctx, indexes({}), work("Pod", "DELETED", meta("billing-1", **MANAGED)))
    assert reported == ["billing-1"] and reconciles.calls == []


def test_kopf_watches_the_agents_policies_and_alert_sinks_only() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(ReconcileContext(client=None), registry)
    plurals = {
        selector.any_name
        for handler_registry in (registry._watching, registry._indexing, registry._changing)
        for handler in handler_registry.get_all_handlers()
        for selector in [handler.selector]
        if selector is not None
    }
    assert plurals == {"governedagents", "governancepolicies", "alertsinks"}


def test_an_expired_watch_lists_again(monkeypatch: pytest.MonkeyPatch) -> None:
    stopper = informer.Stopper()
    calls: list[str] = []

    def list_into(*_: Any) -> str:
        calls.append("list")
        return str(len(calls))

    def watch_into(client: Any, kind: str, ns: Any, sel: str, version: str, *_: Any) -> None:
        calls.append(f"watch from {version}")
        if len(calls) >= 4:
            stopper.stop()
            return
        raise informer.Expired("too old")

    monkeypatch.setattr(informer, "_list_into", list_into)
    monkeypatch.setattr(informer, "_watch_into", watch_into)
    informer.inform(None, "ConfigMap", None, "", None, stopper)  # type: ignore[arg-type]
    assert calls == ["list", "watch from 1", "list", "watch from 3"]


def test_watch_lines_are_split_as_they_arrive() -> None:
    class Response:
        def stream(self, amt: int, decode_content: bool) -> Any:
            return iter([b'{"a":', b'1}\n{"b"', b":2}\n\n", b'{"c":3}'])

    assert list(informer._lines(Response())) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
