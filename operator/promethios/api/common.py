"""Shapes shared by the custom resources: API group, references, conditions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "governance.promethios.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "promethios"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


def api_config(**overrides: Any) -> ConfigDict:
    """The API models' pydantic config, with per-model overrides (e.g. CEL rules)."""
    base: dict[str, Any] = {
        "alias_generator": to_camel,
        "populate_by_name": True,
        "extra": "forbid",
        "use_enum_values": True,
        "validate_default": True,
    }
    return ConfigDict(**{**base, **overrides})  # type: ignore[typeddict-item]


class Model(BaseModel):
    """Base for every API model: camelCase on the wire, snake_case in Python."""

    model_config = api_config()


M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


def parse_or_default(model: type[M], raw: Any, default: Callable[[], M] | None = None) -> M:
    """``raw`` (a stored status section) as ``model``; its default when absent or invalid.

    For reading what other writers stored: one section that does not validate must never
    stop the reader from using every other one. The failure is logged (counts only: a
    section may hold data that must not reach logs).
    """
    if raw is None:
        return default() if default is not None else model()
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as error:
        log.warning(
            "%s does not validate (%d errors); read as its default",
            model.__name__,
            error.error_count(),
        )
        return default() if default is not None else model()


class Severity(StrEnum):
    """How serious a policy violation is; declared from least to most serious."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low up to 3 for critical, for comparisons."""
        return SEVERITIES.index(self)


#: Every severity, least serious first (the order of counts in status and metrics).
SEVERITIES: tuple[Severity, ...] = tuple(Severity)


def severity_rank(severity: str) -> int:
    """Rank of a severity string (0 = low … 3 = critical); ValueError for anything else."""
    return Severity(severity).rank


class ProviderType(StrEnum):
    """Which model API the agent speaks; selects the sidecar's proxy dialect."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    CUSTOM = "custom"


class GovernanceMode(StrEnum):
    """``enforce`` blocks or redacts breaches; ``audit`` forwards and only reports."""

    ENFORCE = "enforce"
    AUDIT = "audit"


#: Ports the governance sidecar listens on in every agent pod (see sidecarconfig).
RESERVED_PORTS = (15001, 15090)


class LocalObjectReference(Model):
    """A reference to another object in the same namespace, by name."""

    name: ObjectName = Field(description="Name of the referenced object in the same namespace.")


class SecretKeyReference(Model):
    """A key inside a Secret in the same namespace."""

    name: ObjectName = Field(description="Name of the Secret in the same namespace.")
    key: str = Field(
        "apiKey",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        description="Key inside the Secret's data.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A condition as the Kubernetes API conventions define it (metav1.Condition)."""

    type: str = Field(min_length=1, max_length=316, description="Type of condition in CamelCase.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation the condition was set against."
    )
    last_transition_time: datetime = Field(
        description="Last time the condition changed from one status to another."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Programmatic identifier for the condition's last transition, in CamelCase.",
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")


#: ``status.conditions`` of every kind: a list keyed by type, as the conventions define.
Conditions = Annotated[
    list[Condition],
    Field(
        default_factory=list,
        description="Current state, as Kubernetes API conventions define conditions.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    ),
]
