"""The operator's sidecar-image allowlist: pattern syntax, matching, the command line, and
what the plan does with an agent whose ``spec.sidecar.image`` is not allowed.

A sidecar image receives the provider credential and the agent's ingest key, so an image
the operator administrator did not allow must never reach a pod template.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_reconcile_plan import World, kinds, ready

from promethios.api import conditions as vocab
from promethios.builders import BuildSettings
from promethios.builders.images import image_allowed, parse_image_pattern
from promethios.builders.sidecar import DEFAULT_SIDECAR_IMAGE
from promethios.builders.workload import SIDECAR_CONTAINER
from promethios.controller.options import parse_options
from promethios.controller.plan import plan_agent

PROMETHIOS = "ghcr.io/promethios/*"
EVIL = "evil.example.com/exfiltrate:1"


# ---- pattern syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "ghcr.io/promethios/sidecar:1.2.3",
        "ghcr.io/promethios/*",
        "ghcr.io/promethios/sidecar:*",
        "ghcr.io/promethios/sidecar:1.2.*",
        "ghcr.io/promethios/sidecar@*",
        "registry.local:5000/team/*",
    ],
)
def test_valid_patterns_are_kept_as_written(pattern: str) -> None:
    assert parse_image_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("", "empty"),
        ("*", "allows every image"),
        ("ghcr.io/*/sidecar", "only at the end"),
        ("ghcr.io/**", "only at the end"),
        ("ghcr.io*", "after '/'"),  # would allow ghcr.io.evil.com/...
        ("ghcr.io/promethios*", "after '/'"),  # would allow ghcr.io/promethios-evil/...
        ("ghcr.io/promethios/side car:1", "whitespace"),
    ],
)
def test_invalid_patterns_are_refused_with_the_reason(pattern: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="sidecar image pattern") as raised:
        parse_image_pattern(pattern)
    assert complaint in str(raised.value)


# ---- matching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "patterns", "allowed"),
    [
        ("ghcr.io/promethios/sidecar:1", ["ghcr.io/promethios/sidecar:1"], True),
        ("ghcr.io/promethios/sidecar:10", ["ghcr.io/promethios/sidecar:1"], False),
        ("ghcr.io/promethios/sidecar:1", [PROMETHIOS], True),
        ("ghcr.io/promethios/a/b@sha256:" + "0" * 64, [PROMETHIOS], True),
        ("ghcr.io/promethios-evil/sidecar:1", [PROMETHIOS], False),
        ("ghcr.io/promethios", [PROMETHIOS], False),
        ("evil.io/ghcr.io/promethios/x:1", [PROMETHIOS], False),
        ("ghcr.io/promethios/sidecar:1.2.9", ["ghcr.io/promethios/sidecar:1.2.*"], True),
        ("ghcr.io/promethios/sidecar:1.3.0", ["ghcr.io/promethios/sidecar:1.2.*"], False),
        (EVIL, [], False),
        (EVIL, ["other.io/*", "evil.example.com/exfiltrate:1"], True),
    ],
)
def test_image_allowed(image: str, patterns: list[str], allowed: bool) -> None:
    assert image_allowed(image, patterns) is allowed


def test_the_operators_own_sidecar_image_is_always_allowed() -> None:
    settings = BuildSettings(allowed_sidecar_images=("other.io/*",))
    assert settings.sidecar_image_allowed(DEFAULT_SIDECAR_IMAGE)
    assert settings.sidecar_image_allowed("other.io/sidecar:2")
    assert not settings.sidecar_image_allowed(EVIL)
    custom = BuildSettings(sidecar_image="registry.local/sidecar:dev")
    assert custom.sidecar_image_allowed("registry.local/sidecar:dev")
    assert not custom.sidecar_image_allowed(DEFAULT_SIDECAR_IMAGE)


def test_build_settings_refuse_an_invalid_pattern() -> None:
    with pytest.raises(ValueError, match=r"'ghcr\.io\*'"):
        BuildSettings(allowed_sidecar_images=("ghcr.io*",))


# ---- the command line ------------------------------------------------------------------------


def test_allowed_sidecar_image_is_repeatable_and_empty_by_default() -> None:
    assert parse_options([]).allowed_sidecar_images == ()
    options = parse_options(
        ["--allowed-sidecar-image", PROMETHIOS, "--allowed-sidecar-image=registry.local/x:1"]
    )
    assert options.allowed_sidecar_images == (PROMETHIOS, "registry.local/x:1")


def test_an_invalid_pattern_on_the_command_line_names_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_options(["--allowed-sidecar-image", "ghcr.io/promethios*"])
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "--allowed-sidecar-image" in error and "ghcr.io/promethios*" in error


# ---- the plan ----------------------------------------------------------------------------------


class AllowlistWorld(World):
    """The in-memory API server of ``test_reconcile_plan``, reconciled with ``settings``."""

    def __init__(self, agent: Any, settings: BuildSettings) -> None:
        super().__init__(agent)
        self.settings = settings

    def reconcile(self, now: datetime, keys: Any) -> Any:
        plan = plan_agent(self.observe(), self.settings, now, keys)
        for manifest in plan.apply:
            self.live[manifest["kind"]] = manifest
        if plan.status is not None:
            self.status = {**self.status, **plan.status}
        return plan


def sidecar_images(world: World) -> list[str]:
    deployment = world.live.get("Deployment")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"] + pod.get("initContainers", [])
    return [c["image"] for c in containers if c["name"] == SIDECAR_CONTAINER]


def test_a_disallowed_sidecar_image_gets_no_workload(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = AllowlistWorld(agent_factory(sidecar={"image": EVIL}), BuildSettings())
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Secret"]  # the operator's own key Secret; no pod, no config
    assert all(EVIL not in str(manifest) for manifest in plan.apply)
    assert plan.blocker is not None
    assert plan.blocker.reason == vocab.SIDECAR_IMAGE_NOT_ALLOWED == "SidecarImageNotAllowed"
    assert plan.status is not None
    condition = ready(plan.status)
    assert condition["status"] == "False" and condition["reason"] == "SidecarImageNotAllowed"
    assert "spec.sidecar.image" in condition["message"] and EVIL in condition["message"]
    assert "--allowed-sidecar-image" in condition["message"]
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "SidecarImageNotAllowed")]
    assert "spec.sidecar.image" in plan.events[0].message
    again = world.reconcile(now + timedelta(seconds=30), keys)
    assert again.apply == [] and again.events == [] and again.status is None


def test_switching_a_running_agent_to_a_disallowed_image_leaves_its_deployment_unchanged(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = AllowlistWorld(agent_factory(), BuildSettings())
    world.reconcile(now, keys)
    assert sidecar_images(world) == [DEFAULT_SIDECAR_IMAGE]
    world.agent = agent_factory(sidecar={"image": EVIL}, generation=2)
    plan = world.reconcile(now, keys)
    assert "Deployment" not in kinds(plan) and "ConfigMap" not in kinds(plan)
    assert sidecar_images(world) == [DEFAULT_SIDECAR_IMAGE]
    assert plan.status is not None and ready(plan.status)["reason"] == "SidecarImageNotAllowed"
    assert plan.status["observedGeneration"] == 2


def test_an_allowed_sidecar_image_is_deployed(agent_factory: Any, now: datetime, keys: Any) -> None:
    image = "ghcr.io/promethios/sidecar-fips:2"
    world = AllowlistWorld(
        agent_factory(sidecar={"image": image}),
        BuildSettings(allowed_sidecar_images=(PROMETHIOS,)),
    )
    plan = world.reconcile(now, keys)
    assert kinds(plan) == ["Secret", "ConfigMap", "Deployment", "Service"]
    assert plan.blocker is None and plan.events == []
    assert sidecar_images(world) == [image]


def test_allowing_the_image_later_deploys_the_agent(
    agent_factory: Any, now: datetime, keys: Any
) -> None:
    world = AllowlistWorld(agent_factory(sidecar={"image": EVIL}), BuildSettings())
    world.reconcile(now, keys)
    world.settings = BuildSettings(allowed_sidecar_images=(EVIL,))  # the operator restarted
    plan = world.reconcile(now, keys)
    assert plan.blocker is None
    assert kinds(plan) == ["ConfigMap", "Deployment", "Service"]
    assert sidecar_images(world) == [EVIL]


# ---- the chart's values.schema.json agrees with the operator -----------------------------------

SCHEMA = Path(__file__).resolve().parents[3] / "charts/promethios-operator/values.schema.json"
EXAMPLES = [
    "ghcr.io/promethios/sidecar:1.2.3",
    "ghcr.io/promethios/*",
    "ghcr.io/promethios/sidecar:*",
    "ghcr.io/promethios/sidecar:1.2.*",
    "ghcr.io/promethios/sidecar@*",
    "registry.local:5000/team/*",
    "registry.local:5*",
    "*",
    "ghcr.io/*/x",
    "ghcr.io/**",
    "ghcr.io*",
    "ghcr.io/promethios*",
    "ghcr.io/a b",
    "/*",
]


@pytest.mark.parametrize("pattern", EXAMPLES)
def test_chart_schema_accepts_exactly_what_the_operator_accepts(pattern: str) -> None:
    """So a bad sidecar.allowedImages fails `helm install`, not the operator's start."""
    schema = json.loads(SCHEMA.read_text())
    regex = schema["properties"]["sidecar"]["properties"]["allowedImages"]["items"]["pattern"]
    try:
        parse_image_pattern(pattern)
        operator_accepts = True
    except ValueError:
        operator_accepts = False
    assert (re.fullmatch(regex, pattern) is not None) is operator_accepts
