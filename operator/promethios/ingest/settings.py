"""Typed settings of the ingest API, one docstring per field.

Defaults suit the operator's in-process ingest; ``promethios ingest`` fills them from
its command line. Tests shorten the intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network


@dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest API needs to run; immutable once started."""

    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = 8443
    """TCP port of the report API (0 picks a free port; the runner reports the real one)."""
    metrics_host: str = "0.0.0.0"
    """Address of the plain-HTTP listener for ``/metrics``, ``/healthz`` and ``/readyz``."""
    metrics_port: int = 9090
    """Its port (0 picks a free one). Never the report port: the reports are on TLS only,
    and ``/metrics`` names every namespace's agents, so it is kept off the agents' path."""
    tls_cert_file: str | None = None
    """PEM certificate chain the report API serves (HTTPS); re-read when it changes."""
    tls_key_file: str | None = None
    """PEM private key of ``tls_cert_file``. Neither file: plain HTTP, unless the caller
    hands :func:`~promethios.ingest.main.start_ingest` a certificate it keeps itself."""
    tls_reload_seconds: float = 30.0
    """How often the certificate files are checked for a new certificate (rotation)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose GovernedAgents are served; empty means every namespace."""
    kubeconfig: str | None = None
    """Kubeconfig path for the shared client; None means in-cluster or the default."""
    read_token: str | None = None
    """Bearer token for ``GET /api/v1/governance/summary``; None disables the summary."""
    max_body_bytes: int = 64 * 1024
    """Largest request body accepted; larger bodies get 413."""
    rate_per_second: float = 20.0
    """Sustained heartbeats and metrics reports per second per agent (token bucket refill)."""
    rate_burst: int = 100
    """Heartbeats and metrics reports an agent may send at once before it gets 429."""
    violation_rate_per_second: float = 20.0
    """Sustained violation reports per second per agent: a budget of their own, so an agent
    flooding heartbeats or metrics never defers its own violations."""
    violation_rate_burst: int = 200
    """Violation reports an agent may send at once (a sidecar draining its spool)."""
    allowance_rate_per_second: float = 50.0
    """Sustained allowance exchanges per second per agent (all its sidecars together): a
    sidecar exchanges about once per lease, well under one per second."""
    allowance_rate_burst: int = 200
    """Allowance exchanges an agent may send at once (a rollout starting many sidecars)."""
    idempotency_ttl_seconds: float = 3600.0
    """How long a report's idempotency key is remembered per agent."""
    idempotency_max_keys: int = 4096
    """Keys remembered per agent; the oldest are forgotten first beyond this."""
    flush_interval_seconds: float = 30.0
    """Least time between two routine status writes of one agent."""
    write_budget_per_second: float = 20.0
    """Fleet-wide budget of routine status writes (heartbeat-only and metrics-only
    refreshes) per second: each agent's refresh interval is at least agents / budget
    seconds. Transitions (a condition flipping, violations, enforcement) are never
    budgeted. 0 disables the budget."""
    heartbeat_flush_seconds: float = 120.0
    """Least time between writes whose only news is a newer lastHeartbeat/uptime.

    Liveness is carried by the HeartbeatFresh condition, which is written at once when it
    flips, so refreshing the timestamp more often only loads the API server."""
    stale_check_seconds: float = 1.0
    """How often the stale-heartbeat checker and the flush scheduler wake."""
    gc_settle_seconds: float = 60.0
    """How often the process's long-lived objects are frozen out of the garbage collector's
    full passes (see :mod:`promethios.heap`): those passes then stay short however
    large the fleet. 0 leaves the collector as Python sets it."""
    history_seconds: float = 24 * 3600.0
    """How far back ``/summary`` can look; older history is dropped."""
    history_max_events: int = 10_000
    """Violations kept per agent for the summary (bounded memory)."""
    max_violation_types_per_agent: int = 10
    """Distinct violation types each agent gets its own metric label for; later ones count as
    ``other``. Per agent, so one agent inventing types never takes label values from another."""
    event_aggregation_seconds: float = 600.0
    """Repeats of one violation type+severity within this window patch one Event."""
    alert_dedup_seconds: float = 300.0
    """Repeats of one agent+type+severity within this window make one alert."""
    alert_backoff_seconds: float = 1.0
    """First retry delay of an alert delivery; doubles on each retry."""
    alert_backoff_cap_seconds: float = 60.0
    """Longest delay between two attempts of one alert delivery."""
    alert_sink_cache_seconds: float = 30.0
    """How long an AlertSink and its Secrets, once read, serve later alerts (0 disables)."""
    alert_sink_allowed_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()
    """Networks alert deliveries may reach although they are loopback, private or not
    routable, and the only ones plain ``http`` may reach (e.g. an in-cluster receiver's
    range; 127.0.0.1/32 in tests). Cloud metadata, link-local, unspecified and multicast
    addresses stay refused whatever this holds. Anyone who may create AlertSinks can make
    the ingest API post to these networks: keep them narrow."""
    alert_queue_size: int = 1000
    """Alerts waiting for delivery; beyond this new alerts are dropped and counted."""
    resync_seconds: float = 300.0
    """How often the Kubernetes watches re-list from scratch."""
    status_write_timeout_seconds: float = 10.0
    """Time a violation report waits for its status write before answering 503."""

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: give both or neither")
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(f"metrics_port must differ from port (both are {self.port})")
