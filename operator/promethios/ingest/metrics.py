"""Prometheus metrics of the ingest API, in their own registry (no free-text labels).

Names:
- ``promethios_agent_trust_score{namespace,name}``             server trust score (0-1)
- ``promethios_agent_reported_trust_score{namespace,name}``    agent-reported trust (0-1)
- ``promethios_agent_heartbeat_age_seconds{namespace,name}``   seconds since the last heartbeat
- ``promethios_violations_total{namespace,name,severity,type}`` violations recorded; each
  agent gets its own ``max_types_per_agent`` distinct ``type`` values, its later ones count
  as ``other`` (one agent inventing types cannot take label values from another)
- ``promethios_violations_lost_total{namespace,name,severity}``  violations a sidecar dropped
- ``promethios_ingest_requests_total{endpoint,code}``          requests by route template and code
- ``promethios_ingest_request_duration_seconds{endpoint}``     request latency histogram
- ``promethios_status_writes_total{result}``                   status writes (ok | error | conflict:
  a 409 from another replica's write, re-read and merged)
- ``promethios_alert_deliveries_total{sink_type,result}``      alert deliveries: ok (once per
  delivered alert) | failed (once per alert given up on) | refused (given up on: the
  destination policy refused every address) | retried (per retry) | dropped | deduplicated
- ``promethios_events_total{action}``                          Events (create | patch | error)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .aggregator import Aggregator

ENDPOINTS = frozenset(
    {
        "heartbeat",
        "metrics",
        "violations",
        "allowance",
        "summary",
        "openapi",
        "healthz",
        "readyz",
        "metrics_scrape",
    }
)


class _AgentCollector(Collector):
    """Per-agent gauges computed at scrape time from the aggregator (no stale series)."""

    def __init__(self, aggregator: Aggregator, clock: Callable[[], float]) -> None:
        self._aggregator = aggregator
        self._clock = clock

    def collect(self):  # type: ignore[no-untyped-def]
        now = self._clock()
        labels = ["namespace", "name"]
        trust = GaugeMetricFamily(
            "promethios_agent_trust_score", "Server-computed trust score.", labels=labels
        )
        reported = GaugeMetricFamily(
            "promethios_agent_reported_trust_score",
            "Trust score the agent reported.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "promethios_agent_heartbeat_age_seconds",
            "Seconds since the last heartbeat.",
            labels=labels,
        )
        for state in list(self._aggregator.agents.values()):
            key = [state.config.namespace, state.config.name]
            trust.add_metric(key, state.trust_score(now))
            if state.reported_trust is not None:
                reported.add_metric(key, state.reported_trust)
            if state.last_heartbeat is not None:
                age.add_metric(key, max(0.0, now - state.last_heartbeat))
        yield trust
        yield reported
        yield age


class IngestMetrics:
    """The ingest API's metric objects; one instance per app, one registry each."""

    def __init__(
        self, aggregator: Aggregator, clock: Callable[[], float], max_types_per_agent: int = 10
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._max_types = max_types_per_agent
        self._types: dict[tuple[str, str], set[str]] = {}
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "promethios_ingest_requests",
            "Ingest requests by endpoint and status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "promethios_ingest_request_duration_seconds",
            "Ingest request latency.",
            ["endpoint"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
            ),
            registry=self.registry,
        )
        self.violations = Counter(
            "promethios_violations",
            "Violations recorded.",
            ["namespace", "name", "severity", "type"],
            registry=self.registry,
        )
        self.lost_violations = Counter(
            "promethios_violations_lost",
            "Violations a sidecar reported it had to drop (its spool full).",
            ["namespace", "name", "severity"],
            registry=self.registry,
        )
        self.status_writes = Counter(
            "promethios_status_writes",
            "GovernedAgent status writes.",
            ["result"],
            registry=self.registry,
        )
        self.alert_deliveries = Counter(
            "promethios_alert_deliveries",
            "Alert deliveries by sink type and result.",
            ["sink_type", "result"],
            registry=self.registry,
        )
        self.events = Counter(
            "promethios_events", "Kubernetes Events recorded.", ["action"], registry=self.registry
        )
        self.registry.register(_AgentCollector(aggregator, clock))

    def violation_type_label(self, namespace: str, name: str, vtype: str) -> str:
        """``vtype`` while the agent has used fewer than its quota of types, else ``other``."""
        seen = self._types.setdefault((namespace, name), set())
        if vtype in seen:
            return vtype
        if len(seen) < self._max_types:
            seen.add(vtype)
            return vtype
        return "other"

    def forget_agent(self, namespace: str, name: str) -> None:
        """A deleted agent's type quota is freed."""
        self._types.pop((namespace, name), None)

    def count_violation(self, namespace: str, name: str, severity: str, vtype: str) -> None:
        """Count one recorded violation."""
        label = self.violation_type_label(namespace, name, vtype)
        self.violations.labels(namespace, name, severity, label).inc()

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        """Count and time one request (endpoint is a fixed route name, never a raw path)."""
        children = self._children.get((endpoint, code))
        if children is None:  # labels() costs a lock and a tuple; cache the children
            label = endpoint if endpoint in ENDPOINTS else "other"
            children = (self.requests.labels(label, str(code)), self.latency.labels(label))
            if len(self._children) < 1000:
                self._children[(endpoint, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def status_write_count(self, result: str = "ok") -> float:
        """Status writes so far (tests and benchmarks read it)."""
        value = self.registry.get_sample_value("promethios_status_writes_total", {"result": result})
        return value or 0.0

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
