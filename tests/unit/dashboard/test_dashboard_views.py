"""The pages' pure logic: rows from stored objects, worst-first order, filters, ranges."""

from __future__ import annotations

import pytest
from dashboard_fakes import T0, agent_object, bucket, policy_object, sink_object

from promethios.dashboard.model import agent_row, mask, policy_row, sink_row
from promethios.dashboard.summary import fleet_summary
from promethios.dashboard.views import (
    FleetFilter,
    fleet_page,
    health,
    parse_range,
    policy_entries,
    sink_entries,
)

NOW = T0 + 3600


def names(page: object) -> list[str]:
    return [entry.row.name for entry in page.entries]  # type: ignore[attr-defined]


def test_worst_first_enforcement_readiness_staleness_compliance_severity_trust() -> None:
    rows = [
        agent_row(agent_object("a", "healthy-low-trust", trust=0.2, now=NOW)),
        agent_row(agent_object("a", "healthy", now=NOW)),
        agent_row(agent_object("a", "suspended", action="Suspended", breach=1, now=NOW)),
        agent_row(agent_object("a", "quarantined", action="Quarantined", breach=2, now=NOW)),
        agent_row(agent_object("a", "not-ready", ready="False", now=NOW)),
        agent_row(agent_object("a", "stale", fresh="False", now=NOW)),
        agent_row(agent_object("a", "noncompliant", compliant="False", now=NOW)),
        agent_row(agent_object("a", "critical", history=[bucket(NOW - 600, critical=1)], now=NOW)),
        agent_row(agent_object("a", "high", history=[bucket(NOW - 600, high=5)], now=NOW)),
    ]
    page = fleet_page(rows, {"a"}, FleetFilter(), NOW)
    assert names(page) == [
        "quarantined",
        "suspended",
        "not-ready",
        "stale",
        "noncompliant",
        "critical",
        "high",
        "healthy-low-trust",
        "healthy",
    ]
    assert page.health_counts == {
        "Quarantined": 1, "Suspended": 1, "NotReady": 1, "Stale": 1, "NonCompliant": 1,
        "Healthy": 4,
    }  # fmt: skip


def test_only_visible_namespaces_whatever_the_filter_asks() -> None:
    rows = [agent_row(agent_object(ns, f"bot-{ns}", now=NOW)) for ns in ("a", "b", "c")]
    assert names(fleet_page(rows, {"a", "c"}, FleetFilter(), NOW)) == ["bot-a", "bot-c"]
    hidden = fleet_page(rows, {"a"}, FleetFilter(namespace="b"), NOW)
    assert names(hidden) == [] and hidden.namespaces == ("a",) and hidden.visible == 1


def test_filters_by_namespace_state_and_policy() -> None:
    rows = [
        agent_row(agent_object("a", "q", action="Quarantined", breach=1, policy="p1", now=NOW)),
        agent_row(agent_object("a", "ok", policy="p2", now=NOW)),
        agent_row(agent_object("b", "down", ready="False", policy="p1", now=NOW)),
    ]
    visible = {"a", "b"}
    assert names(fleet_page(rows, visible, FleetFilter(namespace="a"), NOW)) == ["q", "ok"]
    assert names(fleet_page(rows, visible, FleetFilter(state="attention"), NOW)) == ["q", "down"]
    assert names(fleet_page(rows, visible, FleetFilter(state="enforced"), NOW)) == ["q"]
    assert names(fleet_page(rows, visible, FleetFilter(state="healthy"), NOW)) == ["ok"]
    assert names(fleet_page(rows, visible, FleetFilter(policy="p1"), NOW)) == ["q", "down"]
    chosen = FleetFilter.from_query({"state": "<script>", "range": "99y", "namespace": "a"})
    assert (chosen.state, chosen.range, chosen.namespace) == ("all", "1h", "a")


def test_range_counts_come_from_the_stored_history() -> None:
    history = [bucket(NOW - 600, high=2), bucket(NOW - 7200, low=3), bucket(NOW - 80000, medium=1)]
    row = agent_row(agent_object("a", "bot", history=history, now=NOW))
    for chosen, expected in (("15m", 2), ("1h", 2), ("6h", 5), ("24h", 6)):
        page = fleet_page([row], {"a"}, FleetFilter(range=chosen), NOW)
        assert page.entries[0].in_range == expected, chosen
    document = fleet_summary([row], {"a"}, 3 * 3600, NOW)
    assert document["fleet"]["violations"]["bySeverity"] == {
        "low": 3, "medium": 0, "high": 2, "critical": 0,
    }  # fmt: skip
    assert document["since"] <= document["generatedAt"] and document["bucketSeconds"] == 300
    assert fleet_summary([row], set(), 3600, NOW)["agents"] == []


def test_agent_row_masks_descriptions_and_survives_a_bad_section() -> None:
    obj = agent_object(
        "a",
        "bot",
        recent=[{"id": "v1", "type": "pii.email", "severity": "high",
                 "description": "mail to jane.doe@example.com with key sk-abcdefgh12345678",
                 "time": "2023-11-14T22:15:00Z"}],
    )  # fmt: skip
    obj["status"]["heartbeat"] = {"state": "bogus"}  # does not validate: read as its default
    row = agent_row(obj)
    assert row.recent[0].description == "mail to [hidden] with key [hidden]"
    assert row.heartbeat_state == "unknown" and row.trust == 0.9 and row.is_ready
    assert "jane" not in mask("jane.doe@example.com") and "4111" not in mask("4111 1111 1111 1111")


def test_policies_and_sinks_pages() -> None:
    agents = [
        agent_row(agent_object("a", "one", policy="p", sinks=("hook",),
                               history=[bucket(NOW - 60, critical=1)], now=NOW)),
        agent_row(agent_object("a", "two", policy="p", now=NOW)),
        agent_row(agent_object("b", "other", policy="p", now=NOW)),
    ]  # fmt: skip
    entries = policy_entries([policy_row(policy_object("a", "p"))], agents, NOW - 3600)
    assert entries[0].agents == ("one", "two") and entries[0].counts["critical"] == 1
    assert entries[0].policy.ready is not None and entries[0].policy.ready.status == "True"
    sinks = [
        sink_row(sink_object("a", "hook", delivered=3)),
        sink_row(sink_object("a", "broken", failed=1, lastError="failed after 6 attempts",
                             conditions=[{"type": "Ready", "status": "False",
                                          "reason": "DeliveryFailed", "message": "",
                                          "lastTransitionTime": "2023-11-14T22:15:00Z"}])),
    ]  # fmt: skip
    listed = sink_entries(sinks, agents)
    assert [e.sink.name for e in listed] == ["broken", "hook"]  # failing first
    assert listed[1].agents == ("one",) and listed[1].sink.delivered == 3


def test_health_word_and_range_parsing() -> None:
    row = agent_row(agent_object("a", "bot", now=NOW))
    assert health(row, NOW) == "Healthy"
    assert parse_range("15m") == 900 and parse_range("1d") == 86400 and parse_range("90") == 90
    for bad in ("0", "2d", "1w", "-1h", "1h; drop"):
        with pytest.raises(ValueError, match="range"):
            parse_range(bad)
