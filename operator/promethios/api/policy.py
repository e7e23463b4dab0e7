"""The ``GovernancePolicy`` custom resource: what the sidecar enforces on model calls."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .budget import MAX_BUDGETS, Budget, BudgetOptions, Pricing, UsageStatus
from .common import Conditions, Model, Severity, api_config
from .egress import EgressPolicy
from .resource import CustomResourceInfo, PrinterColumn


class PatternScope(StrEnum):
    """Which side of a model call a blocked pattern is checked on."""

    REQUEST = "request"
    RESPONSE = "response"
    BOTH = "both"


class PiiAction(StrEnum):
    """What the sidecar does with detected PII (in ``enforce`` mode)."""

    BLOCK = "block"
    REDACT = "redact"
    REPORT = "report"


class PiiType(StrEnum):
    """Kinds of personal or secret data the sidecar detects."""

    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "creditCard"
    SSN = "ssn"
    API_KEY = "apiKey"


class BlockedPattern(Model):
    """A regular expression that must not appear in prompts or completions."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z0-9]([-_a-zA-Z0-9]*[a-zA-Z0-9])?$",
        description="Rule name, reported in violations and errors.",
    )
    pattern: str = Field(min_length=1, max_length=1024, description="Python regular expression.")
    applies_to: PatternScope = Field(PatternScope.BOTH, description="request, response or both.")
    severity: Severity = Field(Severity.HIGH, description="Severity of a match.")
    case_insensitive: bool = Field(True, description="Match ignoring case.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from error
        return value


class PiiDetection(Model):
    """Detection of personal data and secrets in prompts and completions."""

    enabled: bool = Field(True, description="Turn PII detection on or off.")
    action: PiiAction = Field(PiiAction.REDACT, description="block, redact or report.")
    types: list[PiiType] = Field(
        default_factory=lambda: list(PiiType),
        max_length=5,
        description="Kinds of PII to detect.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    severity: Severity = Field(Severity.MEDIUM, description="Severity of a detection.")


class RateLimits(Model):
    """Rate limits each sidecar enforces on its own over a sliding minute (per replica: for a
    limit over all replicas, use a budget with window Minute)."""

    requests_per_minute: int | None = Field(
        None, ge=1, le=1_000_000, description="Model calls per minute; unset: no limit."
    )
    tokens_per_minute: int | None = Field(
        None, ge=1, le=100_000_000, description="Tokens per minute; unset: no limit."
    )


class TokenBudget(Model):
    """A token budget each sidecar keeps in memory over a sliding window (per replica, reset by
    a restart); ``budgets`` are kept by the ingest API for all replicas and survive restarts."""

    tokens: int = Field(ge=1, le=10_000_000_000, description="Tokens allowed per window.")
    window_seconds: int = Field(
        86400, ge=60, le=2_592_000, description="Window length in seconds (1 min to 30 days)."
    )


class SeverityWeights(Model):
    """Trust lost per violation of each severity."""

    low: float = Field(0.01, ge=0, le=1, description="Trust lost per low violation.")
    medium: float = Field(0.05, ge=0, le=1, description="Trust lost per medium violation.")
    high: float = Field(0.15, ge=0, le=1, description="Trust lost per high violation.")
    critical: float = Field(0.4, ge=0, le=1, description="Trust lost per critical violation.")


class TrustScoring(Model):
    """How the ingest API computes trust: 1 minus weighted violations, recovering over time."""

    weights: SeverityWeights = Field(default_factory=SeverityWeights)
    recovery_per_hour: float = Field(
        0.05, ge=0, le=1, description="Trust regained per hour without violations."
    )


class GovernancePolicySpec(Model):
    """Desired state of a GovernancePolicy."""

    model_config = api_config(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.budgets) || !self.budgets.exists(b, has(b.cost)) "
                    "|| has(self.pricing)",
                    "message": "a budget with cost needs spec.pricing",
                    "fieldPath": ".pricing",
                    "reason": "FieldValueRequired",
                },
            ]
        }
    )

    blocked_patterns: list[BlockedPattern] = Field(
        default_factory=list,
        max_length=128,
        description="Regular expressions that must not appear in prompts or completions.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    pii_detection: PiiDetection = Field(default_factory=PiiDetection)
    allowed_models: list[
        Annotated[str, Field(min_length=1, max_length=256, description="A model name.")]
    ] = Field(default_factory=list, max_length=64, description="Models allowed; empty allows any.")
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    budget: TokenBudget | None = Field(
        None, description="Token budget per sliding window, kept by each sidecar on its own."
    )
    trust_scoring: TrustScoring = Field(default_factory=TrustScoring)
    budgets: list[Budget] = Field(
        default_factory=list,
        max_length=MAX_BUDGETS,
        description="Budgets per calendar window, kept by the ingest API across all replicas.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    pricing: Pricing | None = Field(None, description="Token prices, for budgets in currency.")
    budget_options: BudgetOptions = Field(default_factory=BudgetOptions)
    egress: EgressPolicy | None = Field(
        None, description="What the pods of agents with egress Locked may reach."
    )

    @model_validator(mode="after")
    def _cost_needs_pricing(self) -> GovernancePolicySpec:
        if self.pricing is None and any(b.cost is not None for b in self.budgets):
            raise ValueError("a budget with cost needs spec.pricing")
        return self


class GovernancePolicyStatus(Model):
    """Observed state of a GovernancePolicy."""

    model_config = api_config(defer_build=True)  # the sidecar imports this module, never this

    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation last acted on."
    )
    conditions: Conditions
    usage: UsageStatus | None = Field(
        None, description="Shared budgets (scope Policy or Namespace), written by the ingest API."
    )


GOVERNANCE_POLICY = CustomResourceInfo(
    kind="GovernancePolicy",
    plural="governancepolicies",
    singular="governancepolicy",
    short_names=("gp",),
    spec_model=GovernancePolicySpec,
    status_model=GovernancePolicyStatus,
    description="What the governance sidecar enforces on every model call.",
    printer_columns=(
        PrinterColumn("PII", "string", ".spec.piiDetection.action"),
        PrinterColumn("Budget", "string", ".status.usage.summary"),
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
    ),
)
