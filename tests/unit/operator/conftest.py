"""Builders for typed agents and live objects shared by the operator's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from promethios.api.agent import Agent
from promethios.api.governedagent import GovernedAgentSpec

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
UID = "0f0e0d0c-0000-4000-8000-000000000001"


def spec_dict(**overrides: Any) -> dict[str, Any]:
    """A minimal valid GovernedAgent spec (camelCase, as stored), with overrides."""
    spec: dict[str, Any] = {
        "image": "example.com/agent:1.0",
        "modelProvider": {
            "type": "openai",
            "credentialsSecretRef": {"name": "openai-credentials", "key": "apiKey"},
        },
        "governance": {"policyRef": {"name": "default-policy"}},
    }
    spec.update(overrides)
    return spec


def make_agent(generation: int = 1, **overrides: Any) -> Agent:
    """A typed Agent named ``support-bot`` in ``team-a``."""
    return Agent(
        name="support-bot",
        namespace="team-a",
        uid=UID,
        generation=generation,
        spec=GovernedAgentSpec.model_validate(spec_dict(**overrides)),
    )


class Keys:
    """A deterministic key source: key-1, key-2, …"""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"key-{self.count}"


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def agent_factory() -> Any:
    return make_agent


@pytest.fixture
def now() -> datetime:
    return NOW
