"""The API server refuses bad specs and defaults good ones, as the generated CRDs say.

Each invalid case starts from a valid object, breaks one thing, creates it on a
real API server and expects HTTP 422 with a cause naming the broken field. The
positive tests read objects back and check the server filled the same defaults
the pydantic models do, and that ``kubectl get ga`` shows the printer columns.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from pydantic import BaseModel

from promethios.api.alertsink import AlertSinkSpec
from promethios.api.common import GROUP, VERSION
from promethios.api.governedagent import GovernedAgentSpec
from promethios.api.policy import GovernancePolicySpec

pytestmark = pytest.mark.usefixtures("crds_installed")

Body = dict[str, Any]
DELETE = object()
PLURALS = {"GovernedAgent": "governedagents", "GovernancePolicy": "governancepolicies"}
PLURALS["AlertSink"] = "alertsinks"
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "GovernedAgent": GovernedAgentSpec,
    "GovernancePolicy": GovernancePolicySpec,
    "AlertSink": AlertSinkSpec,
}

VALID_SPECS: dict[str, Body] = {
    "GovernedAgent": {
        "image": "registry.example.com/agent:1.0",
        "modelProvider": {"type": "openai"},
        "governance": {"policyRef": {"name": "default"}},
    },
    "GovernancePolicy": {
        "blockedPatterns": [{"name": "no-secrets", "pattern": "(?i)password"}],
    },
    "AlertSink": {"type": "webhook", "url": "https://hooks.example.com/promethios"},
}


def manifest(kind: str, name: str, spec: Body | None) -> Body:
    """A full object of ``kind`` with ``spec`` (no spec key at all when None)."""
    body: Body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
    if spec is not None:
        body["spec"] = spec
    return body


def edited(spec: Body, changes: dict[str, Any]) -> Body:
    """A copy of ``spec`` with dotted paths set to values (or removed with ``DELETE``)."""
    result = copy.deepcopy(spec)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return result


@dataclass(frozen=True)
class Invalid:
    """One spec the API server must refuse, and the field its error must name."""

    id: str
    kind: str
    changes: dict[str, Any]
    field: str
    message: str = ""


SECRET = {"name": "sink-secret", "key": "token"}
INVALID = [
    Invalid("trust-above-1", "GovernedAgent", {"governance.trustThreshold": 1.5},
            "spec.governance.trustThreshold", "less than or equal to 1"),
    Invalid("trust-negative", "GovernedAgent", {"governance.trustThreshold": -0.1},
            "spec.governance.trustThreshold"),
    Invalid("base-url-not-http", "GovernedAgent", {"modelProvider.baseUrl": "ftp://models"},
            "spec.modelProvider.baseUrl"),
    Invalid("custom-without-base-url", "GovernedAgent", {"modelProvider.type": "custom"},
            "spec.modelProvider.baseUrl", "baseUrl is required when type is custom"),
    Invalid("heartbeat-zero", "GovernedAgent", {"governance.heartbeatIntervalSeconds": 0},
            "spec.governance.heartbeatIntervalSeconds"),
    Invalid("heartbeat-too-slow", "GovernedAgent", {"governance.heartbeatIntervalSeconds": 301},
            "spec.governance.heartbeatIntervalSeconds"),
    Invalid("replicas-negative", "GovernedAgent", {"replicas": -1}, "spec.replicas"),
    Invalid("mode-bad-enum", "GovernedAgent", {"governance.mode": "observe"},
            "spec.governance.mode", "Unsupported value"),
    Invalid("provider-bad-enum", "GovernedAgent", {"modelProvider.type": "gemini"},
            "spec.modelProvider.type", "Unsupported value"),
    Invalid("on-breach-bad-enum", "GovernedAgent", {"governance.onBreach": "Explode"},
            "spec.governance.onBreach"),
    Invalid("image-missing", "GovernedAgent", {"image": DELETE}, "spec.image", "Required value"),
    Invalid("policy-ref-missing", "GovernedAgent", {"governance.policyRef": DELETE},
            "spec.governance.policyRef", "Required value"),
    Invalid("policy-ref-bad-name", "GovernedAgent", {"governance.policyRef.name": "Bad_Name"},
            "spec.governance.policyRef.name"),
    Invalid("port-too-high", "GovernedAgent", {"port": 70000}, "spec.port"),
    Invalid("port-is-the-sidecars", "GovernedAgent", {"port": 15001}, "spec.port",
            "governance sidecar's"),
    Invalid("pull-policy-bad", "GovernedAgent", {"imagePullPolicy": "Sometimes"},
            "spec.imagePullPolicy"),
    Invalid("too-many-sinks", "GovernedAgent",
            {"alertSinks": [{"name": f"s{i}"} for i in range(17)]}, "spec.alertSinks"),
    Invalid("pagerduty-without-routing-key", "AlertSink", {"type": "pagerduty", "url": DELETE},
            "spec.routingKeySecretRef", "routingKeySecretRef is required"),
    Invalid("webhook-url-and-secret", "AlertSink", {"urlSecretRef": SECRET}, "spec.url",
            "exactly one of url or urlSecretRef"),
    Invalid("webhook-no-url", "AlertSink", {"url": DELETE}, "spec.url",
            "exactly one of url or urlSecretRef"),
    Invalid("slack-with-signing-secret", "AlertSink",
            {"type": "slack", "signingSecretRef": SECRET}, "spec.signingSecretRef",
            "only used by webhook sinks"),
    Invalid("sink-url-metadata", "AlertSink", {"url": "http://169.254.169.254/latest/"},
            "spec.url", "cloud metadata"),
    Invalid("sink-url-metadata-name", "AlertSink",
            {"url": "https://metadata.google.internal/computeMetadata/v1/"}, "spec.url",
            "cloud metadata"),
    Invalid("sink-url-no-host", "AlertSink", {"url": "https://:8080/x"}, "spec.url"),
    Invalid("sink-type-bad-enum", "AlertSink", {"type": "email"}, "spec.type"),
    Invalid("sink-timeout-zero", "AlertSink", {"timeoutSeconds": 0}, "spec.timeoutSeconds"),
    Invalid("sink-min-severity-bad", "AlertSink", {"minSeverity": "urgent"}, "spec.minSeverity"),
    Invalid("duplicate-pattern-names", "GovernancePolicy",
            {"blockedPatterns": [{"name": "x", "pattern": "a"}, {"name": "x", "pattern": "b"}]},
            "spec.blockedPatterns[1]", "Duplicate value"),
    Invalid("pattern-name-bad", "GovernancePolicy",
            {"blockedPatterns": [{"name": "-x-", "pattern": "a"}]}, "spec.blockedPatterns[0].name"),
    Invalid("egress-allow-every-address", "GovernancePolicy",
            {"egress": {"allow": [{"cidr": "0.0.0.0/0"}]}}, "spec.egress.allow[0].cidr",
            "undoes the lock"),
    Invalid("pii-action-bad-enum", "GovernancePolicy", {"piiDetection.action": "shred"},
            "spec.piiDetection.action", "Unsupported value"),
    Invalid("pii-types-duplicate", "GovernancePolicy", {"piiDetection.types": ["email", "email"]},
            "spec.piiDetection.types[1]", "Duplicate value"),
    Invalid("budget-window-too-small", "GovernancePolicy",
            {"budget": {"tokens": 1000, "windowSeconds": 10}}, "spec.budget.windowSeconds"),
    Invalid("budget-without-tokens", "GovernancePolicy", {"budget": {"windowSeconds": 3600}},
            "spec.budget.tokens", "Required value"),
    Invalid("requests-per-minute-zero", "GovernancePolicy", {"rateLimits.requestsPerMinute": 0},
            "spec.rateLimits.requestsPerMinute"),
    Invalid("weight-above-1", "GovernancePolicy", {"trustScoring.weights.high": 2},
            "spec.trustScoring.weights.high"),
]  # fmt: skip


def refusal(call: Callable[[], Any]) -> tuple[int, Body]:
    """The HTTP status and Status body of a request that must fail."""
    with pytest.raises(client.ApiException) as caught:
        call()
    status: Body = json.loads(caught.value.body or "{}")
    return int(caught.value.status), status


def cause_fields(status: Body) -> list[str]:
    """The ``field`` of every cause in a Status."""
    return [cause.get("field", "") for cause in status.get("details", {}).get("causes", [])]


@pytest.fixture
def objects(api_client: Any) -> client.CustomObjectsApi:
    """The custom-objects API of the session's cluster."""
    return client.CustomObjectsApi(api_client)


def create(api: client.CustomObjectsApi, namespace: str, body: Body) -> Body:
    """Create ``body`` in ``namespace`` and return what the server stored."""
    plural = PLURALS[body["kind"]]
    return cast(Body, api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body))


def test_cases_cover_every_kind() -> None:
    assert {case.kind for case in INVALID} == set(PLURALS)
    assert len(INVALID) >= 14
    assert len({case.id for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize("case", INVALID, ids=[case.id for case in INVALID])
def test_invalid_spec_is_refused_naming_the_field(
    case: Invalid, objects: client.CustomObjectsApi, namespace: str
) -> None:
    body = manifest(case.kind, "bad", edited(VALID_SPECS[case.kind], case.changes))
    code, status = refusal(lambda: create(objects, namespace, body))
    assert code == 422, status
    assert status["reason"] == "Invalid"
    assert case.field in cause_fields(status), status["message"]
    assert case.message in status["message"]


@pytest.mark.parametrize("name", ["a" * 64, "9lives", "has.dots"])
def test_agent_name_its_children_cannot_carry_is_refused(
    name: str, objects: client.CustomObjectsApi, namespace: str
) -> None:
    """Valid object names that no Service could take are refused, naming metadata.name."""
    body = manifest("GovernedAgent", name, VALID_SPECS["GovernedAgent"])
    code, status = refusal(lambda: create(objects, namespace, body))
    assert code == 422, status
    assert "metadata.name must be a DNS-1035 label" in status["message"]


@pytest.mark.parametrize("kind", sorted(VALID_SPECS))
def test_valid_spec_is_defaulted_like_the_model(
    kind: str, objects: client.CustomObjectsApi, namespace: str
) -> None:
    stored = create(objects, namespace, manifest(kind, "good", VALID_SPECS[kind]))
    model = SPEC_MODELS[kind]
    expected = model.model_validate(VALID_SPECS[kind])
    assert model.model_validate(stored["spec"]) == expected
    dumped = expected.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert strip_empty(stored["spec"]) == strip_empty(dumped)


def strip_empty(value: Any) -> Any:
    """``value`` without empty lists and maps (the CRD does not default those)."""
    if isinstance(value, dict):
        stripped = {k: strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in stripped.items() if v not in ([], {})}
    if isinstance(value, list):
        return [strip_empty(v) for v in value]
    return value


def test_minimal_agent_gets_governance_defaults(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, manifest("GovernedAgent", "minimal", VALID_SPECS["GovernedAgent"]))
    read = cast(
        Body,
        objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "governedagents", "minimal"
        ),
    )
    spec = read["spec"]
    governance = spec["governance"]
    assert governance["mode"] == "enforce"
    assert governance["trustThreshold"] == 0.7
    assert governance["heartbeatIntervalSeconds"] == 15
    assert governance["missedHeartbeatsBeforeStale"] == 3
    assert governance["onBreach"] == "Alert"
    assert spec["apiKey"] == {"rotation": 0, "gracePeriodSeconds": 600}
    assert (spec["port"], spec["suspend"]) == (8080, False)
    assert "replicas" not in spec


def test_policy_without_spec_is_fully_defaulted(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    stored = create(objects, namespace, manifest("GovernancePolicy", "empty", None))
    pii = stored["spec"]["piiDetection"]
    assert pii["action"] == "redact"
    assert pii["types"] == ["email", "phone", "creditCard", "ssn", "apiKey"]
    assert stored["spec"]["trustScoring"]["weights"]["critical"] == 0.4


def test_status_is_validated_and_defaulted(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, manifest("GovernedAgent", "agent", VALID_SPECS["GovernedAgent"]))

    def patch_status(status: Body) -> Body:
        patched = objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "governedagents", "agent", {"status": status}
        )
        return cast(Body, patched)

    code, refused = refusal(lambda: patch_status({"governance": {"trustScore": 2}}))
    assert code == 422
    assert "status.governance.trustScore" in cause_fields(refused)
    stored = patch_status({"governance": {"trustScore": 0.5, "violations": {"high": 1}}})
    violations = stored["status"]["governance"]["violations"]
    assert violations == {"low": 0, "medium": 0, "high": 1, "critical": 0, "total": 0}
    assert stored["status"]["governance"]["interactions"] == 0


def kubectl_until(cluster: Any, *args: str, timeout: float = 20.0) -> str:
    """``kubectl`` output, retried while discovery catches up with new CRDs."""
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.kubectl(*args, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return str(result.stdout)
        time.sleep(0.5)


def test_kubectl_get_ga_shows_printer_columns(
    cluster: Any, objects: client.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, manifest("GovernedAgent", "shown", VALID_SPECS["GovernedAgent"]))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Ready", "status": "True", "reason": "Reconciled",
                 "lastTransitionTime": now}  # fmt: skip
    status = {
        "conditions": [condition],
        # What the ingest API writes: the score, and beside it the score with two decimals.
        "governance": {
            "trustScore": 0.8533333,
            "trustScoreDisplay": "0.85",
            "violations": {"total": 2},
        },
        "heartbeat": {"state": "active", "lastHeartbeat": now},
        # What the ingest API writes for budgets: the highest percentage.
        "usage": {"summary": "42%"},
        # What the operator writes for the egress in force.
        "egress": {"mode": "Locked", "placement": "Gateway", "gateway": "shown-gateway"},
    }
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "governedagents", "shown", {"status": status}
    )
    header, row = kubectl_until(cluster, "get", "ga", "-n", namespace).splitlines()
    assert header.split() == [
        "NAME", "READY", "TRUST", "VIOLATIONS", "BUDGET", "HEARTBEAT", "AGE"
    ]  # fmt: skip
    assert row.split()[:5] == ["shown", "True", "0.85", "2", "42%"]
    wide = kubectl_until(cluster, "get", "ga", "-n", namespace, "-o", "wide").splitlines()
    assert wide[0].split()[-3:] == ["MODE", "POLICY", "EGRESS"]
    assert wide[1].split()[-3:] == ["enforce", "default", "Locked"]


def test_category_and_short_names_resolve(
    cluster: Any, objects: client.CustomObjectsApi, namespace: str
) -> None:
    for kind, spec in VALID_SPECS.items():
        create(objects, namespace, manifest(kind, "one", spec))
    listed = kubectl_until(cluster, "get", "promethios", "-n", namespace, "-o", "name")
    kinds = sorted(line.split("/")[0] for line in listed.splitlines())
    assert kinds == sorted(f"{kind.lower()}.{GROUP}" for kind in PLURALS)
    for short in ("ga", "gp", "as"):
        assert kubectl_until(cluster, "get", short, "one", "-n", namespace, "-o", "name")


def test_kubectl_server_side_apply_refuses_with_field(cluster: Any, namespace: str) -> None:
    spec = edited(VALID_SPECS["GovernedAgent"], {"governance.trustThreshold": 7})
    text = yaml.safe_dump(manifest("GovernedAgent", "applied", spec))
    args = ("apply", "--server-side", "-n", namespace, "-f", "-")
    result = cluster.kubectl(*args, check=False, input=text)
    assert result.returncode != 0
    assert "spec.governance.trustThreshold" in result.stderr
    fixed = yaml.safe_dump(manifest("GovernedAgent", "applied", VALID_SPECS["GovernedAgent"]))
    assert "serverside-applied" in cluster.kubectl(*args, input=fixed).stdout
