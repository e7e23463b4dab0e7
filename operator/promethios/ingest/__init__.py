"""The governance ingest API: heartbeats, metrics and violations from governed agents.

- :mod:`.settings`     typed settings
- :mod:`.keystore`     API-key index fed from the operator's Secrets (contract in its docstring)
- :mod:`.trust`        the server-side trust score formula
- :mod:`.aggregate`    per-agent state, conditions, status rendering and the replica merge (pure)
- :mod:`.enforcement`  breach detection and the Suspend/Quarantine decision (pure)
- :mod:`.writer`       status flush policy, the coalescing writer and conditional (409) writes
- :mod:`.events`       Kubernetes Event aggregation (pure)
- :mod:`.alerts`       AlertSink formatting (pure) and async delivery
- :mod:`.metrics`      Prometheus metrics (own registry)
- :mod:`.app`          aiohttp routes, auth, error mapping; :mod:`.openapi` the document
- :mod:`.service`      glue between the HTTP layer and the state
- :mod:`.kubeio`       real sinks and watches over :mod:`promethios.kube.governance`
- :mod:`.main`         ``promethios ingest`` and :func:`start_ingest` for the operator
"""
