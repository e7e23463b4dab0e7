"""The integration instructions: the agent's real values, its provider's dialect, code
that cannot be broken out of, and snippets that parse (Python compiles, Node checks)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promethios.api.agent import Agent, parse_agent
from promethios.api.policy import GovernancePolicySpec
from promethios.deploy.instructions import allowed_models, environment, render, snippets


def agent(**spec: Any) -> Agent:
    body = {
        "metadata": {"name": "bot", "namespace": "team-a", "uid": "1234"},
        "spec": {
            "image": "registry.example/bot:1",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": "strict"}},
            **spec,
        },
    }
    return parse_agent(body)


POLICY = GovernancePolicySpec.model_validate(
    {
        "blockedPatterns": [
            {"name": "no-hosts", "pattern": r"internal\.corp", "severity": "critical"}
        ],
        "allowedModels": ["gpt-4o", "gpt-4o-mini"],
        "rateLimits": {"requestsPerMinute": 30},
        "budget": {"tokens": 1000, "windowSeconds": 3600},
    }
)


def test_the_environment_is_what_the_operator_gives_the_agent_container() -> None:
    env = dict(environment(agent()))
    assert env["PROMETHIOS_AGENT_ID"] == "team-a/bot"
    assert env["PROMETHIOS_GOVERNANCE_ID"] == "ga-1234"
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:15001/v1"
    anthropic = dict(environment(agent(modelProvider={"type": "anthropic"})))
    assert anthropic["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:15001"
    assert "OPENAI_BASE_URL" not in anthropic


def test_instructions_name_the_agent_its_policy_and_how_to_release() -> None:
    text = render(agent(), POLICY, {"enforcement": {"action": "Suspended", "breach": 3}})
    assert "# Integrating `team-a/bot`" in text
    assert "| `OPENAI_BASE_URL` | `http://127.0.0.1:15001/v1` |" in text
    assert "`no-hosts` (both, severity critical" in text
    assert "30 calls/min" in text and "1000 tokens per 3600 s" in text
    assert "Breach **3** is in force: **Suspended**" in text
    assert '"acknowledgedBreach":3' in text
    assert "kubectl -n team-a patch governedagent bot" in text


def test_each_dialect_gets_its_own_sdk_snippets() -> None:
    openai = render(agent(), POLICY)
    assert "from openai import OpenAI" in openai and "anthropic" not in openai.lower()
    claude = render(agent(modelProvider={"type": "anthropic"}), None)
    assert "from anthropic import Anthropic" in claude and "@anthropic-ai/sdk" in claude
    assert "OpenAI SDK" not in claude
    assert set(snippets(agent())) == {
        "openai-python",
        "openai-node",
        "report-python",
        "report-curl",
    }


def test_snippets_call_an_allowed_model() -> None:
    limited = agent(modelProvider={"type": "openai", "allowedModels": ["gpt-4o-mini", "o3"]})
    assert allowed_models(limited, POLICY) == ["gpt-4o-mini"]
    assert 'model="gpt-4o-mini"' in snippets(limited, POLICY)["openai-python"]
    assert allowed_models(agent(), None) is None


def test_a_hostile_model_name_stays_inside_its_string_literal() -> None:
    hostile = 'x", messages=[]); import os; os.system("id"); print("'
    text = snippets(agent(modelProvider={"type": "openai", "allowedModels": [hostile]}))
    tree = ast.parse(text["openai-python"])
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    names = {getattr(c.func, "attr", getattr(c.func, "id", "")) for c in calls}
    assert "system" not in names  # no injected call, only the SDK's
    model = next(k.value for c in calls for k in c.keywords if k.arg == "model")
    assert isinstance(model, ast.Constant) and model.value == hostile


def test_the_python_snippets_compile() -> None:
    for name, code in snippets(agent()).items():
        if name.endswith("python"):
            compile(code, name, "exec")
    compile(snippets(agent(modelProvider={"type": "anthropic"}))["anthropic-python"], "a", "exec")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_snippets_are_valid_modules(tmp_path: Path) -> None:
    pieces = {**snippets(agent()), **snippets(agent(modelProvider={"type": "anthropic"}))}
    for name in ("openai-node", "anthropic-node"):
        path = tmp_path / f"{name}.mjs"
        path.write_text(pieces[name])
        result = subprocess.run(
            ["node", "--check", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


def test_an_external_agent_is_told_where_its_sidecar_runs() -> None:
    text = render(
        agent(runtime="External", governance={"policyRef": {"name": "p"}, "onBreach": "Quarantine"})
    )
    assert "**External**" in text and "promethios package --format compose team-a/bot" in text
    assert "its pods are scaled to zero" not in text  # the operator runs none
    assert "could not be read (it does not exist yet" in text  # no policy given
