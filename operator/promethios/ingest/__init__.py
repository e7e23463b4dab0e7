"""The governance ingest API: heartbeats, metrics and violations from governed agents.

- :mod:`.settings`     typed settings
- :mod:`.keystore`     API-key index fed from the operator's Secrets (:mod:`promethios.api.apikey`)
- :mod:`.agents`       a GovernedAgent as the ingest uses it, parsed with the API models
- :mod:`.records`      value types: a recorded violation, a condition, a report's outcome
- :mod:`.state`        one agent's state, and the stored object it was last told of
- :mod:`.pending`      one replica's deltas since its last successful write
- :mod:`.aggregator`   report intake: heartbeats, metrics, violations (pure)
- :mod:`.trust`        the server-side trust score formula
- :mod:`.enforcement`  breach detection and the Suspend/Quarantine decision (pure)
- :mod:`.conditions`   HeartbeatFresh and PolicyCompliant (pure)
- :mod:`.codec`        the one codec between the state and the status (typed, both ways)
- :mod:`.merge`        several replicas: the stored status plus this replica's deltas (pure)
- :mod:`.summary`      the fleet summary over a time range (pure)
- :mod:`.writer`       status flush policy, the coalescing writer and conditional (409) writes
- :mod:`.events`       Kubernetes Event aggregation (pure)
- :mod:`.alertformat`  AlertSink bodies and signatures (pure)
- :mod:`.alerts`       async alert delivery with dedup and retries
- :mod:`.metrics`      Prometheus metrics (own registry)
- :mod:`.app`          aiohttp routes, auth, error mapping; :mod:`.openapi` the document
- :mod:`.service`      glue between the HTTP layer and the state
- :mod:`.kubeio`       real sinks and watches over :mod:`promethios.kube.governance`
- :mod:`.main`         ``promethios ingest`` and :func:`start_ingest` for the operator
"""
