"""The sidecar's Prometheus metrics, on a registry of its own (one per app instance).

Beside the ``promethios_sidecar_*`` metrics, the model calls are measured under the
OpenTelemetry GenAI semantic conventions, in their Prometheus spelling:

- ``gen_ai_client_token_usage`` (histogram, ``{token}``) by ``gen_ai_token_type``
  (input | output), from the provider's reported usage only;
- ``gen_ai_client_operation_duration_seconds`` (histogram);

both with ``gen_ai_operation_name`` (chat | text_completion | embeddings),
``gen_ai_provider_name`` (openai | anthropic | custom) and ``gen_ai_request_model`` (at
most :data:`MAX_MODEL_LABELS` distinct models, then ``other``: the agent names them), and
``error_type`` on the duration (the HTTP status of a failed call, else empty). The bucket
boundaries are the conventions' advice. ``promethios_sidecar_governance_overhead_seconds``
is the time the sidecar spent on a call itself (checks, inspection, budgets), not waiting
for the provider.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)  # fmt: skip
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)  # fmt: skip
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25)  # fmt: skip
GENAI_LABELS = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"]
MAX_MODEL_LABELS = 32
MAX_MODEL_LABEL_LENGTH = 128


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
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Input and output tokens used per model call (GenAI semantic conventions).",
            [*GENAI_LABELS, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of model calls (GenAI semantic conventions).",
            [*GENAI_LABELS, "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "promethios_sidecar_governance_overhead_seconds",
            "Time the sidecar spent on a model call itself (not waiting for the provider).",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.allowance = Counter(
            "promethios_sidecar_allowance_exchanges",
            "Allowance exchanges with the ingest API, by result (ok | error | unreachable).",
            ["result"],
            registry=r,
        )
        self._models: set[str] = set()
        self.config_reloads = Counter(
            "promethios_sidecar_config_reloads",
            "Reloads of the mounted config and secret files, by result.",
            ["result"],
            registry=r,
        )

    def model_label(self, model: str | None) -> str:
        """``gen_ai_request_model``: the model, while fewer than the cap are known; else other."""
        if not model:
            return ""
        model = model[:MAX_MODEL_LABEL_LENGTH]
        if model in self._models:
            return model
        if len(self._models) < MAX_MODEL_LABELS:
            self._models.add(model)
            return model
        return "other"
