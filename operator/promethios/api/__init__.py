"""Typed models: the single source of truth for the project's data shapes.

- :mod:`.common`          API group, shared references, conditions, severities
- :mod:`.conditions`      condition types and reasons on a GovernedAgent
- :mod:`.enforcement`     what a breach may trigger and what status records
- :mod:`.metadata`        labels and annotations the operator, ingest and tools share
- :mod:`.governedagent`   the ``GovernedAgent`` custom resource (spec)
- :mod:`.agentstatus`     its status (the operator's part and the ingest API's)
- :mod:`.agent`           a GovernedAgent as the rest of the code sees it
- :mod:`.rollout`         ``spec.runtime``, ``spec.rollout`` and the revision status
- :mod:`.policy`          the ``GovernancePolicy`` custom resource
- :mod:`.budget`          budgets and the usage written back
- :mod:`.alertsink`       the ``AlertSink`` custom resource
- :mod:`.apikey`          the API-key Secret contract
- :mod:`.wire`            the ingest wire contract (heartbeats, metrics, violations)
- :mod:`.allowance`       the allowance exchange between a sidecar and the ingest API
- :mod:`.sidecarconfig`   the file the operator mounts into the governance sidecar
- :mod:`.resource`, :mod:`.crdgen`  CRD generation from these models

This package imports pydantic only: the sidecar depends on it and must stay small.
"""
