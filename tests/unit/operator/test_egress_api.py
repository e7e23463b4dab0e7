"""The egress lock's API: ``spec.governance.egress`` and ``GovernancePolicy.spec.egress``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_fakes import make_agent
from pydantic import ValidationError

from promethios.api.egress import EgressMode, EgressRule
from promethios.api.policy import GovernancePolicySpec
from promethios.builders import BuildSettings, build_sidecar_config
from promethios.builders.sidecar import render_config


def test_egress_defaults_to_open() -> None:
    assert make_agent().spec.governance.egress == EgressMode.OPEN


def test_egress_locked_is_accepted() -> None:
    agent = make_agent(governance={"policyRef": {"name": "p"}, "egress": "Locked"})
    assert agent.spec.governance.egress == EgressMode.LOCKED


def test_unknown_egress_mode_names_the_field() -> None:
    with pytest.raises(ValidationError) as error:
        make_agent(governance={"policyRef": {"name": "p"}, "egress": "Closed"})
    assert "governance.egress" in str(error.value)


def rule(**fields: Any) -> EgressRule:
    return EgressRule.model_validate(fields)


def test_a_rule_allows_pods_by_selector_with_ports() -> None:
    parsed = rule(podSelector={"matchLabels": {"app": "db"}}, ports=[{"port": 5432}])
    assert parsed.pod_selector is not None
    assert parsed.pod_selector.match_labels == {"app": "db"}
    assert parsed.ports[0].protocol == "TCP"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cidr": "10.0.0.0/8", "podSelector": {}}, "set either cidr or podSelector"),
        ({"ports": [{"port": 80}]}, "set cidr, podSelector or namespaceSelector"),
        ({"cidr": "10.0.0.1/8"}, "cidr '10.0.0.1/8' is not a network address range"),
        ({"cidr": "not-a-cidr"}, "cidr"),
        ({"cidr": "0.0.0.0/0"}, "cidr '0.0.0.0/0': allows every address"),
        ({"cidr": "::/0", "ports": [{"port": 443}]}, "cidr '::/0': allows every address"),
        ({"podSelector": {"matchLabels": {"bad key!": "x"}}}, "matchLabels key 'bad key!'"),
        ({"cidr": "10.0.0.0/8", "ports": [{"port": 0}]}, "ports.0.port"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        rule(**fields)
    assert message in str(error.value)


def test_policy_allow_list_parses_from_camel_case() -> None:
    spec = GovernancePolicySpec.model_validate(
        {"egress": {"allow": [{"cidr": "192.168.0.0/16"}, {"namespaceSelector": {}}]}}
    )
    assert spec.egress is not None
    assert [r.cidr for r in spec.egress.allow] == ["192.168.0.0/16", None]


def test_sidecar_config_leaves_the_allow_list_out() -> None:
    """NetworkPolicies enforce the allow list; an older sidecar must keep reading its file."""
    policy = GovernancePolicySpec.model_validate({"egress": {"allow": [{"cidr": "10.0.0.0/8"}]}})
    config = build_sidecar_config(make_agent(), "p", policy, BuildSettings())
    rendered = json.loads(render_config(config))
    assert "egress" not in rendered["policy"]
    assert "10.0.0.0/8" not in json.dumps(rendered)
