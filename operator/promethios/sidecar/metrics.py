"""The sidecar's Prometheus metrics, on a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class SidecarMetrics:
    """Every metric the sidecar exports (names are ``promethios_sidecar_*``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "promethios_sidecar_requests",
            "Model calls through the proxy, by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.violations = Counter(
            "promethios_sidecar_violations",
            "Policy violations found, by rule kind and severity.",
            ["kind", "severity"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "promethios_sidecar_upstream_latency_seconds",
            "Model call duration as the agent sees it (to the last byte).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "promethios_sidecar_tokens", "Tokens counted against the limits.", registry=r
        )
        self.spool_entries = Gauge(
            "promethios_sidecar_spool_entries", "Violations waiting for delivery.", registry=r
        )
        self.spool_dropped = Counter(
            "promethios_sidecar_spool_dropped",
            "Violations dropped because the spool was full, by severity.",
            ["severity"],
            registry=r,
        )
        self.deliveries = Counter(
            "promethios_sidecar_deliveries",
            "Reports sent to the ingest API, by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self.config_reloads = Counter(
            "promethios_sidecar_config_reloads",
            "Reloads of the mounted config and secret files, by result.",
            ["result"],
            registry=r,
        )
