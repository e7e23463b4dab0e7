"""Egress lock: where an agent's pods may connect (``spec.governance.egress``) and what a
GovernancePolicy lets a locked agent reach besides its governance (``spec.egress.allow``).

``Open`` is the original placement: the governance proxy is a sidecar in the agent's pod,
and the pod's traffic is not restricted. ``Locked`` moves the proxy out of the pod into a
per-agent gateway (a NetworkPolicy selects pods, not containers, so a policy that let a
sidecar out would let the agent out too), and the operator writes NetworkPolicies that
leave the agent's pods only DNS, that gateway and the policy's allow list.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .common import Model, api_config


class EgressMode(StrEnum):
    """Whether the agent's pods may connect anywhere (Open) or only through governance."""

    OPEN = "Open"
    LOCKED = "Locked"


class Placement(StrEnum):
    """Where the governance proxy runs for an agent."""

    SIDECAR = "Sidecar"
    GATEWAY = "Gateway"


class Protocol(StrEnum):
    """A transport protocol NetworkPolicies match."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


#: A label key: an optional DNS-subdomain prefix and '/', then a name of 1-63 characters.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LabelValue = Annotated[
    str,
    Field(
        max_length=63,
        pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$",
        description="A label value.",
    ),
]


class Selector(Model):
    """Labels an object must all carry (a label selector's ``matchLabels``)."""

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Labels the selected objects carry; empty: all.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.all(k, k.size() <= 316 && k.matches('{LABEL_KEY_PATTERN}'))",
                    "message": "matchLabels keys must be label keys ([prefix/]name)",
                    "reason": "FieldValueInvalid",
                }
            ]
        },
    )

    @field_validator("match_labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if len(key) > 316 or not re.match(LABEL_KEY_PATTERN, key):
                raise ValueError(f"matchLabels key {key!r} is not a label key ([prefix/]name)")
        return labels


class EgressPort(Model):
    """A destination port."""

    port: int = Field(ge=1, le=65535, description="Destination port (the pod's, not a Service's).")
    protocol: Protocol = Field(Protocol.TCP, description="TCP (default), UDP or SCTP.")


#: CEL: one kind of destination per rule.
ONE_DESTINATION = "set either cidr or podSelector/namespaceSelector, not both"
NO_DESTINATION = "set cidr, podSelector or namespaceSelector"
CIDR_PATTERN = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"


#: A /0 range would let a locked agent reach the provider directly: that is egress Open.
EVERY_ADDRESS = "allows every address, which undoes the lock (use egress: Open instead)"


class EgressRule(Model):
    """One destination a locked agent may reach: in-cluster pods by selector, or a CIDR."""

    model_config = api_config(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.cidr) && (has(self.podSelector) || "
                    "has(self.namespaceSelector)))",
                    "message": ONE_DESTINATION,
                    "fieldPath": ".cidr",
                    "reason": "FieldValueInvalid",
                },
                {
                    "rule": "!has(self.cidr) || !self.cidr.endsWith('/0')",
                    "message": EVERY_ADDRESS,
                    "fieldPath": ".cidr",
                    "reason": "FieldValueForbidden",
                },
                {
                    "rule": "has(self.cidr) || has(self.podSelector) || "
                    "has(self.namespaceSelector)",
                    "message": NO_DESTINATION,
                    "reason": "FieldValueRequired",
                },
            ]
        }
    )

    pod_selector: Selector | None = Field(
        None, description="Pods to allow (in the agent's namespace unless namespaceSelector)."
    )
    namespace_selector: Selector | None = Field(
        None, description="Namespaces whose pods (all, or podSelector's) are allowed."
    )
    cidr: str | None = Field(
        None,
        max_length=64,
        pattern=CIDR_PATTERN,
        description="An address range, e.g. 10.20.0.0/16 (IPv4 or IPv6).",
    )
    ports: list[EgressPort] = Field(
        default_factory=list, max_length=16, description="Ports allowed; empty: every port."
    )

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as error:
            raise ValueError(f"cidr {value!r} is not a network address range: {error}") from None
        if network.prefixlen == 0:
            raise ValueError(f"cidr {value!r}: {EVERY_ADDRESS}")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> EgressRule:
        has_selector = self.pod_selector is not None or self.namespace_selector is not None
        if self.cidr is not None and has_selector:
            raise ValueError(f"cidr: {ONE_DESTINATION}")
        if self.cidr is None and not has_selector:
            raise ValueError(f"cidr: {NO_DESTINATION}")
        return self


class EgressPolicy(Model):
    """What the pods of a ``Locked`` agent may reach besides DNS and their gateway."""

    allow: list[EgressRule] = Field(
        default_factory=list,
        max_length=64,
        description="Destinations allowed to locked agents' pods; empty: none but the gateway.",
    )


PolicyName = Annotated[str, Field(description="A NetworkPolicy's name.")]


class EgressStatus(Model):
    """The egress and the placement of governance in force (written by the operator)."""

    mode: EgressMode = Field(description="Open or Locked.")
    placement: Placement = Field(description="Sidecar (in the pod) or Gateway (beside it).")
    gateway: str | None = Field(None, description="The gateway's Deployment and Service.")
    network_policies: list[PolicyName] = Field(
        default_factory=list, description="The NetworkPolicies that lock the egress."
    )
    message: str | None = Field(
        None, max_length=1024, description="Why the gateway is not running, if it is not."
    )
