"""Unit tests for the CRD generator (pure: no cluster).

They check that the generated schemas are structural, carry the models'
defaults, bounds and CEL rules, that the API server's defaulting of a minimal
object agrees with pydantic's, and that the committed ``crds/`` files are
exactly what the generator produces.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from promethios import cli
from promethios.api import crdgen
from promethios.api.alertsink import AlertSinkSpec
from promethios.api.common import GROUP, VERSION
from promethios.api.governedagent import GovernedAgentSpec
from promethios.api.policy import GovernancePolicySpec

pytestmark = pytest.mark.unit

Schema = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
FORBIDDEN_KEYWORDS = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const"}


def crd_by_kind(kind: str) -> Schema:
    """The generated CRD for ``kind``."""
    (found,) = [c for c in crdgen.all_crds() if c["spec"]["names"]["kind"] == kind]
    return found


def root_schema(kind: str) -> Schema:
    """The ``openAPIV3Schema`` of ``kind``'s only version."""
    schema: Schema = crd_by_kind(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def node_at(kind: str, path: str) -> Schema:
    """The schema node at a dotted path such as ``spec.governance.mode``."""
    node = root_schema(kind)
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node under ``node`` with its path (``[]`` for list items, ``{}`` for maps)."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def all_nodes() -> Iterator[tuple[str, Schema]]:
    """Every schema node of every generated CRD, path prefixed by the kind."""
    for manifest in crdgen.all_crds():
        schema = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        yield from walk(schema, manifest["spec"]["names"]["kind"])


def apply_defaults(value: Any, node: Schema) -> Any:
    """Default ``value`` the way the API server does: parents first, then children."""
    if isinstance(value, dict) and "properties" in node:
        for name, child in node["properties"].items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(value[name], child)
    elif isinstance(value, list) and "items" in node:
        return [apply_defaults(item, node["items"]) for item in value]
    return value


def strip_empty(value: Any) -> Any:
    """``value`` without empty lists and maps (pydantic fills those; the CRD leaves them out)."""
    if isinstance(value, dict):
        stripped = {k: strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in stripped.items() if v not in ([], {})}
    if isinstance(value, list):
        return [strip_empty(v) for v in value]
    return value


MINIMAL_SPECS: list[tuple[str, type[BaseModel], Schema]] = [
    (
        "GovernedAgent",
        GovernedAgentSpec,
        {
            "image": "agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": "default"}},
        },
    ),
    (
        "GovernancePolicy",
        GovernancePolicySpec,
        {"blockedPatterns": [{"name": "a", "pattern": "x"}]},
    ),
    ("AlertSink", AlertSinkSpec, {"type": "webhook", "url": "https://example.com/hook"}),
]


# --- structural schema -------------------------------------------------------------------------


def test_every_node_has_a_type_or_preserves_unknown_fields() -> None:
    untyped = [
        path
        for path, node in all_nodes()
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []


def test_no_json_schema_keywords_a_crd_forbids() -> None:
    offending = [(path, sorted(FORBIDDEN_KEYWORDS & set(node))) for path, node in all_nodes()]
    assert [entry for entry in offending if entry[1]] == []


def test_properties_and_additional_properties_are_never_combined() -> None:
    both = [p for p, n in all_nodes() if "properties" in n and "additionalProperties" in n]
    assert both == []
    assert all(not isinstance(n.get("additionalProperties"), bool) for _, n in all_nodes())


def test_status_is_structural_not_preserve_unknown() -> None:
    status = node_at("GovernedAgent", "status")
    assert status["type"] == "object"
    assert "x-kubernetes-preserve-unknown-fields" not in status
    assert "heartbeat" in status["properties"]


def test_no_null_defaults() -> None:
    assert [p for p, n in all_nodes() if "default" in n and n["default"] is None] == []


def default_problems(path: str, node: Schema) -> list[str]:
    """Why ``node``'s default does not satisfy ``node`` itself (empty when it does)."""
    default = node["default"]
    python_types: dict[str, Any] = {"string": str, "integer": int, "number": (int, float)}
    python_types.update({"boolean": bool, "object": dict, "array": list})
    problems = []
    if not isinstance(default, python_types[node["type"]]):
        problems.append(f"{path}: {default!r} is not a {node['type']}")
    if "enum" in node and default not in node["enum"]:
        problems.append(f"{path}: {default!r} not in {node['enum']}")
    numeric = node["type"] in ("integer", "number")
    if numeric and not node.get("minimum", default) <= default <= node.get("maximum", default):
        problems.append(f"{path}: {default!r} out of bounds")
    return problems


def test_defaults_satisfy_their_own_schema() -> None:
    with_defaults = [(path, node) for path, node in all_nodes() if "default" in node]
    assert len(with_defaults) > 30
    assert [p for path, n in with_defaults for p in default_problems(path, n)] == []


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("spec.governance.mode", "enforce"),
        ("spec.governance.trustThreshold", 0.7),
        ("spec.governance.heartbeatIntervalSeconds", 15),
        ("spec.governance.missedHeartbeatsBeforeStale", 3),
        ("spec.governance.onBreach", "Alert"),
        ("spec.port", 8080),
        ("spec.suspend", False),
        ("spec.apiKey", {}),
        ("spec.apiKey.rotation", 0),
        ("spec.apiKey.gracePeriodSeconds", 600),
        ("spec.modelProvider.credentialsSecretRef.key", "apiKey"),
    ],
)
def test_governed_agent_defaults(path: str, expected: Any) -> None:
    assert node_at("GovernedAgent", path)["default"] == expected


def test_policy_defaults_include_factory_defaults() -> None:
    assert node_at("GovernancePolicy", "spec")["default"] == {}
    assert node_at("GovernancePolicy", "spec.piiDetection")["default"] == {}
    types = node_at("GovernancePolicy", "spec.piiDetection.types")["default"]
    assert types == ["email", "phone", "creditCard", "ssn", "apiKey"]
    assert node_at("GovernancePolicy", "spec.piiDetection.action")["default"] == "redact"
    assert node_at("GovernancePolicy", "spec.budget.windowSeconds")["default"] == 86400
    assert node_at("GovernancePolicy", "spec.trustScoring.weights.critical")["default"] == 0.4


def test_optional_without_default_has_no_default() -> None:
    assert "default" not in node_at("GovernedAgent", "spec.replicas")
    assert "default" not in node_at("GovernedAgent", "spec.modelProvider.baseUrl")
    assert "default" not in node_at("GovernedAgent", "spec.env")


@pytest.mark.parametrize(
    ("kind", "model", "spec"), MINIMAL_SPECS, ids=[s[0] for s in MINIMAL_SPECS]
)
def test_server_side_defaults_agree_with_the_model(
    kind: str, model: type[BaseModel], spec: Schema
) -> None:
    defaulted = apply_defaults(copy.deepcopy(spec), node_at(kind, "spec"))
    parsed = model.model_validate(spec).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert strip_empty(defaulted) == strip_empty(parsed)
    assert model.model_validate(defaulted) == model.model_validate(spec)


def test_defaulting_a_minimal_agent_fills_governance() -> None:
    defaulted = apply_defaults(copy.deepcopy(MINIMAL_SPECS[0][2]), node_at("GovernedAgent", "spec"))
    assert defaulted["governance"]["mode"] == "enforce"
    assert defaulted["apiKey"] == {"rotation": 0, "gracePeriodSeconds": 600}


# --- required fields, bounds and enums ---------------------------------------------------------


def test_required_fields() -> None:
    assert root_schema("GovernedAgent")["required"] == ["spec"]
    assert node_at("GovernedAgent", "spec")["required"] == ["image", "modelProvider", "governance"]
    assert node_at("GovernedAgent", "spec.governance")["required"] == ["policyRef"]
    assert node_at("GovernedAgent", "spec.modelProvider")["required"] == ["type"]
    assert node_at("AlertSink", "spec")["required"] == ["type"]
    assert node_at("GovernancePolicy", "spec.budget")["required"] == ["tokens"]
    assert "required" not in root_schema("GovernancePolicy")
    assert "required" not in node_at("GovernedAgent", "status")


def test_bounds_and_patterns_are_kept() -> None:
    threshold = node_at("GovernedAgent", "spec.governance.trustThreshold")
    assert (threshold["type"], threshold["minimum"], threshold["maximum"]) == ("number", 0, 1)
    assert node_at("GovernedAgent", "spec.replicas")["maximum"] == 1000
    assert node_at("GovernedAgent", "spec.modelProvider.baseUrl")["pattern"].startswith("^https?")
    assert node_at("GovernedAgent", "spec.image")["maxLength"] == 1024
    assert node_at("GovernedAgent", "spec.alertSinks")["maxItems"] == 16
    assert node_at("GovernancePolicy", "spec.budget.windowSeconds")["minimum"] == 60


def test_enums_are_values() -> None:
    assert node_at("GovernedAgent", "spec.governance.mode")["enum"] == ["enforce", "audit"]
    on_breach = node_at("GovernedAgent", "spec.governance.onBreach")["enum"]
    assert on_breach == ["Alert", "Suspend", "Quarantine"]
    provider = node_at("GovernedAgent", "spec.modelProvider.type")["enum"]
    assert provider == ["openai", "anthropic", "custom"]
    status = node_at("GovernedAgent", "status.conditions.[].status")["enum"]
    assert status == ["True", "False", "Unknown"]


def test_maps_and_datetimes() -> None:
    labels = node_at("GovernedAgent", "spec.podLabels")
    assert labels == {
        "description": "Extra pod labels.",
        "type": "object",
        "additionalProperties": {
            "description": "The label's value.",
            "type": "string",
            "maxLength": 63,
        },
    }
    beat = node_at("GovernedAgent", "status.heartbeat.lastHeartbeat")
    assert (beat["type"], beat["format"]) == ("string", "date-time")


# --- CEL rules and list types ------------------------------------------------------------------


def rules(kind: str, path: str) -> list[str]:
    """The CEL rule expressions at ``path``."""
    return [r["rule"] for r in node_at(kind, path).get("x-kubernetes-validations", [])]


def test_cel_rules_are_attached() -> None:
    assert rules("GovernedAgent", "spec.modelProvider") == [
        "self.type != 'custom' || has(self.baseUrl)"
    ]
    sink_rules = rules("AlertSink", "spec")
    assert len(sink_rules) == 3
    assert any("routingKeySecretRef" in rule for rule in sink_rules)
    first = node_at("AlertSink", "spec")["x-kubernetes-validations"][0]
    assert list(first) == ["rule", "message", "fieldPath", "reason"]


def test_cel_field_paths_exist_in_the_schema() -> None:
    for path, node in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            if "fieldPath" in rule:
                target = rule["fieldPath"].lstrip(".")
                assert target in node["properties"], (path, rule)


def test_list_types() -> None:
    patterns = node_at("GovernancePolicy", "spec.blockedPatterns")
    assert patterns["x-kubernetes-list-type"] == "map"
    assert patterns["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in patterns["items"]["required"]
    assert node_at("GovernancePolicy", "spec.piiDetection.types")["x-kubernetes-list-type"] == "set"
    for kind in ("GovernedAgent", "GovernancePolicy", "AlertSink"):
        conditions = node_at(kind, "status.conditions")
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_root_validations_are_attached() -> None:
    from dataclasses import replace

    from promethios.api.governedagent import GOVERNED_AGENT

    rule = {"message": "m", "rule": "self.metadata.name.size() <= 52"}
    info = replace(GOVERNED_AGENT, root_validations=(rule,))
    schema = crdgen.object_schema(info)
    assert schema["x-kubernetes-validations"] == [{"rule": rule["rule"], "message": "m"}]


# --- names, columns, subresources --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        ("GovernedAgent", "governedagents", ["ga"]),
        ("GovernancePolicy", "governancepolicies", ["gp"]),
        ("AlertSink", "alertsinks", ["as"]),
    ],
)
def test_names_scope_and_subresources(kind: str, plural: str, short: list[str]) -> None:
    manifest = crd_by_kind(kind)
    assert manifest["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = manifest["spec"]
    assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
    assert spec["names"]["shortNames"] == short
    assert spec["names"]["categories"] == ["promethios"]
    assert spec["names"]["listKind"] == f"{kind}List"
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_governed_agent_printer_columns() -> None:
    columns = crd_by_kind("GovernedAgent")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Ready",
        "Trust",
        "Violations",
        "Budget",
        "Heartbeat",
        "Age",
        "Mode",
        "Policy",
        "Egress",
    ]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Heartbeat"]["type"] == "date"
    assert by_name["Mode"]["priority"] == 1
    assert "priority" not in by_name["Trust"]
    assert by_name["Budget"]["jsonPath"] == ".status.usage.summary"
    assert by_name["Egress"]["jsonPath"] == ".status.egress.mode"
    assert by_name["Egress"]["priority"] == 1


# --- converter edge cases ----------------------------------------------------------------------


class _Edge(BaseModel):
    anything: Any = None
    counts: dict[str, int] = Field(default_factory=dict)
    when: datetime | None = None
    fixed: Literal["only"] = "only"


def test_converter_edge_cases() -> None:
    schema = crdgen.structural_schema(_Edge)
    props = schema["properties"]
    assert props["anything"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["fixed"]["enum"] == ["only"]
    assert props["fixed"]["default"] == "only"


class _Union(BaseModel):
    either: int | str


def test_real_unions_are_refused() -> None:
    with pytest.raises(ValueError, match="unions"):
        crdgen.structural_schema(_Union)


def test_malformed_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        crdgen.convert({"type": "object", "x-kubernetes-validations": [{"msg": "x"}]}, {})


# --- committed files and the CLI ---------------------------------------------------------------


def test_committed_crds_match_the_models() -> None:
    expected = crdgen.rendered_files()
    committed = {p.name: p.read_text() for p in CRDS_DIR.glob("*.yaml")}
    assert sorted(committed) == sorted(expected), "run `promethios crds`"
    stale = [name for name in expected if committed[name] != expected[name]]
    assert stale == [], "committed CRDs drifted from the models; run `promethios crds`"


def test_rendered_yaml_round_trips_and_has_header() -> None:
    for manifest in crdgen.all_crds():
        text = crdgen.render(manifest)
        assert text.startswith("# Generated by `promethios crds`")
        assert "&id" not in text
        assert yaml.safe_load(text) == manifest


def test_cli_writes_then_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--output-dir", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crdgen.rendered_files())
    capsys.readouterr()
    assert crdgen.main(["--output-dir", str(tmp_path), "--check"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_check_names_the_drifted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crdgen.main(["--output-dir", str(tmp_path)])
    target = tmp_path / "alertsinks.governance.promethios.ai.yaml"
    target.write_text(target.read_text().replace("maxRetries", "maxRetry"))
    capsys.readouterr()
    assert crdgen.main(["--output-dir", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "alertsinks.governance.promethios.ai.yaml" in out
    assert "governedagents" not in out


def test_cli_dispatches_crds() -> None:
    assert cli.resolve("crds") is crdgen.main


def _nodes_without_description(node: Any, path: str) -> list[str]:
    """Every schema node under ``node`` (properties, list items, map values) lacking one."""
    if not isinstance(node, dict):
        return []
    missing = [] if node.get("description") else [path]
    for name, child in (node.get("properties") or {}).items():
        missing += _nodes_without_description(child, f"{path}.{name}")
    missing += _nodes_without_description(node.get("items"), f"{path}[]")
    missing += _nodes_without_description(node.get("additionalProperties"), f"{path}{{}}")
    return missing


@pytest.mark.parametrize("crd", crdgen.all_crds(), ids=lambda crd: crd["spec"]["names"]["kind"])
def test_every_schema_node_has_a_description(crd: dict[str, Any]) -> None:
    """``kubectl explain`` shows a description at every level of every kind."""
    kind = crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        # The API server forbids anything but the type on the root metadata; kubectl explain
        # shows ObjectMeta's own documentation there.
        missing = _nodes_without_description(schema, kind)
        assert missing == [f"{kind}.metadata"]


def _exclusive_bounds(node: Any, path: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    found = [
        f"{path}.{key}"
        for key in ("exclusiveMinimum", "exclusiveMaximum")
        if key in node and not isinstance(node[key], bool)
    ]
    for name, child in (node.get("properties") or {}).items():
        found += _exclusive_bounds(child, f"{path}.{name}")
    found += _exclusive_bounds(node.get("items"), f"{path}[]")
    return found


@pytest.mark.parametrize("crd", crdgen.all_crds(), ids=lambda crd: crd["spec"]["names"]["kind"])
def test_no_numeric_exclusive_bounds(crd: dict[str, Any]) -> None:
    """The API server reads exclusiveMinimum/Maximum as booleans (OpenAPI v3.0): a number there
    (pydantic's ``gt``/``lt``) makes the whole CRD unloadable."""
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert _exclusive_bounds(schema, crd["spec"]["names"]["kind"]) == []
