"""A GovernedAgent as the rest of the code sees it: identity plus the typed spec.

The controller, the builders and the ingest API all parse a GovernedAgent body with
:func:`parse_agent`, so every default comes from :mod:`.governedagent` and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from .governedagent import NAME_MAX, NAME_PATTERN, NAME_RULE, GovernedAgentSpec


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a GovernedAgent's children, or None when it can."""
    if len(name) > NAME_MAX or not re.fullmatch(NAME_PATTERN, name):
        return f"{NAME_RULE}; got {name[:80]!r}"
    return None


class InvalidSpec(ValueError):
    """The stored spec does not validate against the model (CRD and model disagree)."""


@dataclass(frozen=True)
class Agent:
    """A GovernedAgent: where it is, who it is, and its typed spec."""

    name: str
    namespace: str
    uid: str
    spec: GovernedAgentSpec
    generation: int = 1

    @property
    def agent_id(self) -> str:
        """``<namespace>/<name>``: the agentId of the wire contract."""
        return f"{self.namespace}/{self.name}"

    @property
    def governance_identity(self) -> str:
        """Stable for the resource's life: derived from metadata.uid, which never changes."""
        return f"ga-{self.uid}"


def parse_agent(body: Mapping[str, Any]) -> Agent:
    """The typed :class:`Agent` of a GovernedAgent body; :class:`InvalidSpec` if it is not one."""
    metadata = body.get("metadata") or {}
    try:
        spec = GovernedAgentSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as error:
        raise InvalidSpec(str(error)) from error
    return Agent(
        name=str(metadata["name"]),
        namespace=str(metadata["namespace"]),
        uid=str(metadata.get("uid") or ""),
        spec=spec,
        generation=int(metadata.get("generation") or 1),
    )
