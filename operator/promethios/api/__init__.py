"""Typed models: the single source of truth for the project's data shapes.

- :mod:`.common`          API group, shared references, conditions, severities
- :mod:`.governedagent`   the ``GovernedAgent`` custom resource
- :mod:`.policy`          the ``GovernancePolicy`` custom resource
- :mod:`.alertsink`       the ``AlertSink`` custom resource
- :mod:`.wire`            the ingest wire contract (heartbeats, metrics, violations)
- :mod:`.sidecarconfig`   the file the operator mounts into the governance sidecar

This package imports pydantic only: the sidecar depends on it and must stay small.
"""
