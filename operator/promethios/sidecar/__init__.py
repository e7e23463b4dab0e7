"""The governance sidecar: runs beside every agent, enforces its policy, reports for it.

- :mod:`.main`       ``promethios sidecar`` entry point
- :mod:`.app`        aiohttp wiring: listeners, routes, background loops
- :mod:`.proxy`      the OpenAI/Anthropic-compatible model proxy
- :mod:`.relay`      the provider's answers, bounded, checked and counted
- :mod:`.bounds`     limits on what is buffered and parsed
- :mod:`.routes`     the allowlist of provider routes the proxy forwards
- :mod:`.sse`        policy checks on streamed (SSE) completions
- :mod:`.scanner`    incremental checks on one streamed text
- :mod:`.reporting`  the agent-facing heartbeat/metrics/violations endpoints
- :mod:`.delivery`   heartbeats, metrics and spooled violations to the ingest API
- :mod:`.ingestclient` the ingest API's client: identity, key, verified TLS
- :mod:`.folding`    the agent's own reports, folded into the sidecar's
- :mod:`.termination` the summary of undelivered violations left on exit
- :mod:`.spool`      the durable, bounded violation spool
- :mod:`.state`      shared live state: policy, limits, counters, trust estimate
- :mod:`.policy`     the pure policy engine (blocked patterns, PII, models)
- :mod:`.walk`       the one walk over every string of a JSON body
- :mod:`.escapes`    decoded views of JSON-escaped text
- :mod:`.trust`      the local trust-score estimate
- :mod:`.pii`        PII and secret detectors, Luhn check, redaction
- :mod:`.ratelimit`  sliding-window rate limits and the token budget (per sidecar)
- :mod:`.budget`     the ingest's budgets as leases, and the check on every call (pure)
- :mod:`.budgetgate` that check on a call's way out, its settlement on the way back
- :mod:`.allowance`  the lease exchange with the ingest API, off the hot path
- :mod:`.usage`      a call's worst case before, and what it used after
- :mod:`.config`     loading and watching the mounted config and secret files
- :mod:`.metrics`    the Prometheus metrics

It must never import kopf or the Kubernetes client: it runs in every agent pod.
"""
