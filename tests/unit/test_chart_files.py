"""The install artefacts stay consistent with their sources, without a cluster or helm.

- The chart's and the kustomize base's CRDs are generated from ``crds/`` (drift fails here).
- ``values.schema.json`` is strict and covers exactly the keys of ``values.yaml``.
- The samples are valid for the pydantic models the CRDs are generated from.
- The versions and image names agree across Chart.yaml, manifests, Dockerfile and package.

Rendering, schema refusals and RBAC checks against a server are in
``tests/integration/test_install.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import promethios
from promethios.api.alertsink import AlertSinkSpec
from promethios.api.governedagent import GovernedAgentSpec
from promethios.api.policy import GovernancePolicySpec

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promethios-operator"
MANIFESTS = ROOT / "manifests"
IMAGE = "ghcr.io/promethios/promethios-operator"
#: Values whose content is a Kubernetes type passed through verbatim (not ours to restrict).
PASS_THROUGH = {
    "global", "resources", "podSecurityContext", "securityContext", "podAnnotations",
    "podLabels", "nodeSelector", "affinity", "annotations", "labels",
}  # fmt: skip


def load_sync_script() -> ModuleType:
    """``hack/sync-chart-crds.py`` as a module (its file name is not importable)."""
    path = ROOT / "hack" / "sync-chart-crds.py"
    spec = importlib.util.spec_from_file_location("sync_chart_crds", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sync() -> ModuleType:
    return load_sync_script()


def crd_sources() -> list[Path]:
    sources = sorted((ROOT / "crds").glob("*.yaml"))
    assert sources, "no CRDs in crds/"
    return sources


# ---- CRD copies --------------------------------------------------------------------------


def test_chart_and_manifest_crds_match_crds_dir(sync: ModuleType) -> None:
    problems = sync.drift()
    assert problems == [], "\n".join([*problems, "run: python hack/sync-chart-crds.py"])
    assert sync.main(["--check"]) == 0


def test_drift_is_detected_when_a_source_changes(sync: ModuleType, tmp_path: Path) -> None:
    for source in crd_sources():
        text = source.read_text()
        if source.name.startswith("governedagents"):
            text = text.replace("shortNames:\n    - ga", "shortNames:\n    - gax")
        (tmp_path / source.name).write_text(text)
    problems = sync.drift(tmp_path)
    changed = "governedagents.governance.promethios.ai.yaml"
    assert f"differs from crds/: charts/promethios-operator/templates/crds/{changed}" in problems
    assert f"differs from crds/: manifests/crds/{changed}" in problems
    assert len(problems) == 2, problems


def test_a_removed_source_leaves_a_stale_copy_reported(sync: ModuleType, tmp_path: Path) -> None:
    for source in crd_sources()[1:]:
        (tmp_path / source.name).write_text(source.read_text())
    problems = sync.drift(tmp_path)
    assert any(p.startswith("not generated from crds/ (stale?)") for p in problems), problems


def strip_template(text: str, keep: bool) -> str:
    """The chart CRD as Helm renders it with crds.install=true and crds.keep=``keep``."""
    out: list[str] = []
    skipping = False
    in_comment = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("{{- /*"):
            in_comment = not stripped.endswith("*/}}")
            continue
        if in_comment:
            in_comment = not stripped.endswith("*/}}")
            continue
        if stripped == "{{- if .Values.crds.keep }}":
            skipping = not keep
            continue
        if stripped == "{{- end }}":
            skipping = False
            continue
        if stripped.startswith("{{"):
            continue
        if not skipping:
            out.append(line)
    return "".join(out)


@pytest.mark.parametrize("keep", [True, False], ids=["keep", "no-keep"])
def test_chart_crd_renders_to_the_source_object(keep: bool) -> None:
    for source in crd_sources():
        chart_copy = (CHART / "templates" / "crds" / source.name).read_text()
        rendered = yaml.safe_load(strip_template(chart_copy, keep))
        expected = yaml.safe_load(source.read_text())
        if keep:
            expected["metadata"]["annotations"] = {"helm.sh/resource-policy": "keep"}
        assert rendered == expected, source.name


def test_wrapping_escapes_template_delimiters(sync: ModuleType) -> None:
    text = "kind: CustomResourceDefinition\nmetadata:\n  name: x\nspec:\n  d: 'a {{ b }}'\n"
    wrapped = sync.wrap_for_chart("x.yaml", text)
    assert 'a {{ "{{" }} b }}' in wrapped
    assert wrapped.rstrip().endswith("{{- end }}")


def test_source_annotations_are_refused_not_duplicated(sync: ModuleType) -> None:
    text = "metadata:\n  annotations:\n    a: b\n  name: x\n"
    with pytest.raises(sync.SyncError, match="annotations"):
        sync.wrap_for_chart("x.yaml", text)


def test_kustomize_crds_list_every_copy() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "crds" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [source.name for source in crd_sources()]


# ---- values.schema.json ------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def load_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def strict_objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every object schema that declares its own properties (ours), with its path."""
    found = []
    if schema.get("type") == "object" and "properties" in schema:
        found.append((path or "<root>", schema))
        for key, child in schema["properties"].items():
            if key not in PASS_THROUGH:
                found += strict_objects(child, f"{path}.{key}")
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        found += strict_objects(schema["items"], f"{path}[]")
    return found


def test_schema_objects_refuse_unknown_keys() -> None:
    objects = strict_objects(load_schema())
    assert len(objects) >= 10
    loose = [path for path, schema in objects if schema.get("additionalProperties") is not False]
    # extraEnv items are Kubernetes EnvVars (valueFrom etc.), deliberately open.
    assert loose == [".extraEnv[]"], loose


def keys_of(values: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths in ``values`` that the schema does not declare (recursing into our objects)."""
    missing = []
    for key, value in values.items():
        child = schema.get("properties", {}).get(key)
        if child is None:
            missing.append(f"{path}.{key}")
        elif isinstance(value, dict) and key not in PASS_THROUGH and "properties" in child:
            missing += keys_of(value, child, f"{path}.{key}")
    return missing


def test_schema_declares_every_value_and_nothing_more() -> None:
    schema, values = load_schema(), load_values()
    assert keys_of(values, schema) == []
    assert set(schema["properties"]) - set(values) == {"global"}


def test_schema_pins_the_constraints_the_chart_relies_on() -> None:
    properties = load_schema()["properties"]
    assert properties["replicaCount"] == {**properties["replicaCount"], "minimum": 0}
    assert "maximum" not in properties["replicaCount"]  # more than 1 needs leader election
    election = properties["leaderElection"]
    assert set(election["required"]) == {"enabled", "leaseDuration", "renewDeadline", "retryPeriod"}
    values = load_values()
    assert values["replicaCount"] == 2 and values["leaderElection"]["enabled"] is True
    assert [values["leaderElection"][k] for k in ("leaseDuration", "renewDeadline", "retryPeriod")
            ] == [15, 10, 2]  # fmt: skip
    pull = properties["image"]["properties"]["pullPolicy"]["enum"]
    assert pull == ["Always", "IfNotPresent", "Never"]
    assert properties["watchNamespaces"]["items"]["pattern"].startswith("^[a-z0-9]")
    ingest = properties["ingest"]
    assert ingest["properties"]["mode"]["enum"] == ["inProcess", "standalone"]
    assert ingest["properties"]["replicas"] == {**ingest["properties"]["replicas"], "minimum": 1}
    assert set(ingest["required"]) >= {"mode", "replicas"}
    assert load_values()["ingest"]["mode"] == "inProcess"  # today's behaviour by default


def test_schema_accepts_defaults_and_rejects_bad_values() -> None:
    jsonschema = pytest.importorskip(
        "jsonschema",
        reason="jsonschema is not installed; helm checks the schema in "
        "tests/integration/test_install.py instead",
    )
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    assert list(validator.iter_errors(load_values())) == []
    for bad in ({"replicaCount": "abc"}, {"image": {"pullPolicy": "Sometimes"}}, {"bogus": 1},
                {"leaderElection": {"enabled": True}}):  # fmt: skip
        values = {**load_values(), **bad}
        if "image" in bad:
            values["image"] = {**load_values()["image"], **bad["image"]}
        assert list(validator.iter_errors(values)), bad
    for bad_ingest in ({"mode": "sidecar"}, {"replicas": 0}, {"readTokenSecret": {"key": ""}},
                       {"serviceAccount": {"bogus": 1}}):  # fmt: skip
        values = {**load_values(), "ingest": {**load_values()["ingest"], **bad_ingest}}
        assert list(validator.iter_errors(values)), bad_ingest
    good = {**load_values()["ingest"], "mode": "standalone", "replicas": 1,
            "readTokenSecret": {"name": "summary-token", "key": "token"}}  # fmt: skip
    assert list(validator.iter_errors({**load_values(), "ingest": good})) == []


def test_schema_pins_the_tls_modes_and_refuses_bad_tls_values() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema, values = load_schema(), load_values()
    tls = schema["properties"]["tls"]
    assert tls["properties"]["mode"]["enum"] == ["auto", "cert-manager", "off"]
    assert values["tls"]["mode"] == "auto"  # TLS unless turned off on purpose
    assert values["ingest"]["metricsPort"] != values["ingest"]["port"]
    assert values["ingest"]["metricsPort"] != values["livenessPort"]
    validator = jsonschema.Draft7Validator(schema)
    for bad in ({"mode": "plain"}, {"checkSeconds": 0}, {"extraNames": ["has space"]},
                {"certManager": {"issuerRef": {"kind": "Vault"}}},
                {"certManager": {"duration": "90 days"}}, {"bogus": 1}):  # fmt: skip
        assert list(validator.iter_errors({**values, "tls": {**values["tls"], **bad}})), bad
    issuer = {"certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}}
    good = {**values, "tls": {**values["tls"], "mode": "cert-manager", **issuer}}
    assert list(validator.iter_errors(good)) == []


# ---- samples, versions, image ------------------------------------------------------------

SAMPLE_MODELS = {
    "GovernedAgent": GovernedAgentSpec,
    "GovernancePolicy": GovernancePolicySpec,
    "AlertSink": AlertSinkSpec,
}


def samples() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((MANIFESTS / "samples").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def test_samples_are_valid_for_the_models_and_reference_each_other() -> None:
    by_kind = {doc["kind"]: doc for doc in samples()}
    assert set(by_kind) == {"GovernedAgent", "GovernancePolicy", "AlertSink", "Secret"}
    for kind, model in SAMPLE_MODELS.items():
        model.model_validate(by_kind[kind]["spec"])
    assert all("namespace" not in doc["metadata"] for doc in by_kind.values())
    agent = by_kind["GovernedAgent"]["spec"]
    assert (
        agent["governance"]["policyRef"]["name"] == by_kind["GovernancePolicy"]["metadata"]["name"]
    )
    assert (
        agent["modelProvider"]["credentialsSecretRef"]["name"]
        == by_kind["Secret"]["metadata"]["name"]
    )
    assert agent["modelProvider"]["credentialsSecretRef"]["key"] in by_kind["Secret"]["stringData"]
    assert [s["name"] for s in agent["alertSinks"]] == [by_kind["AlertSink"]["metadata"]["name"]]
    policy = by_kind["GovernancePolicy"]["spec"]
    assert policy["piiDetection"]["action"] == "redact"
    assert policy["blockedPatterns"] and policy["rateLimits"] and policy["budget"]


def test_versions_and_images_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == promethios.__version__
    deployment = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{IMAGE}:{promethios.__version__}"
    assert load_values()["image"]["repository"] == IMAGE


def test_manifests_run_two_replicas_with_leader_election() -> None:
    deployment = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args
    assert "--leader-election-namespace=promethios-system" in args
    budget = yaml.safe_load((MANIFESTS / "poddisruptionbudget.yaml").read_text())
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
        **deployment["spec"]["selector"]["matchLabels"],
        "app.kubernetes.io/component": "operator"}}}  # fmt: skip


def test_kustomization_resources_exist() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / resource).exists(), resource
    assert "crds" in kustomization["resources"]


def test_dockerfile_runs_one_non_root_image() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in instructions
    assert sum(line.startswith("FROM ") for line in instructions) == 2
    assert "USER 65532:65532" in instructions
    assert 'ENTRYPOINT ["promethios"]' in instructions
    assert instructions.index("USER 65532:65532") > max(
        i for i, line in enumerate(instructions) if line.startswith("RUN ")
    )
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]


def test_notes_point_at_files_that_exist() -> None:
    """Every repository path NOTES.txt tells a user to apply exists in the checkout."""
    import re

    notes = (CHART / "templates" / "NOTES.txt").read_text()
    paths = re.findall(r"-f ((?:manifests|crds|charts)/[\w./-]*)", notes)
    assert paths, "NOTES.txt names no file to apply"
    for path in paths:
        target = ROOT / path
        assert target.exists(), f"NOTES.txt points at {path}, which does not exist"
        if target.is_dir():
            assert list(target.glob("*.yaml")), f"{path} holds no manifests"
