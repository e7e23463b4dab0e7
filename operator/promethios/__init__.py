"""Promethios Operator: deploys AI agents on Kubernetes under governance.

The package is layered; imports only go downwards in this list (``make lint`` checks the
contracts in ``pyproject.toml``):

- ``promethios.cli``          console entry point (``promethios <subcommand>``)
- ``promethios.composition``  the composition root: the operator process (controller + ingest)
- ``promethios.controller``   kopf handlers and the one idempotent reconcile
- ``promethios.ingest``       the governance ingest API (heartbeats, metrics, violations);
                              it and the controller never import each other
- ``promethios.sidecar``      the governance sidecar (must never import kopf or kubernetes)
- ``promethios.builders``     pure functions turning typed specs into manifests
- ``promethios.kube``         the client layer; the only code that talks to the API server
- ``promethios.api``          typed models: CRDs, the wire contract, the sidecar config

The embedded control plane and ``make run``'s demo are development tooling: they live in
the separate ``promethios_local`` package (``localdev/``), which is not in the image.
"""

__version__ = "0.1.0"
