"""Promethios Operator: deploys AI agents on Kubernetes under governance.

The package is layered; imports only go downwards in this list:

- ``promethios.cli``          console entry point (``promethios <subcommand>``)
- ``promethios.controller``   kopf handlers and the one idempotent reconcile
- ``promethios.ingest``       the governance ingest API (heartbeats, metrics, violations)
- ``promethios.sidecar``      the governance sidecar (must never import kopf or kubernetes)
- ``promethios.builders``     pure functions turning typed specs into manifests
- ``promethios.kube``         the client layer; the only code that talks to the API server
- ``promethios.api``          typed models: CRDs, the wire contract, the sidecar config
- ``promethios.localcluster`` the embedded control plane for tests, ``make run`` and benchmarks
"""

__version__ = "0.1.0"
