"""Metadata vocabulary the operator, the ingest API and tools share (standard library only).

Label and annotation keys on the operator's children, the field managers each writer
uses for server-side apply, and the ``app.kubernetes.io`` labels that mark what the
operator manages. Every key is defined here once; builders write them, the controller
and the ingest API select and read by them.
"""

from __future__ import annotations

#: Prefix of the operator's own labels, annotations and kopf bookkeeping.
PREFIX = "promethios.ai"

#: Field manager of everything the operator writes (children, its part of status).
OPERATOR_FIELD_MANAGER = "promethios-operator"
#: Field manager of the ingest API's part of a GovernedAgent's status.
INGEST_FIELD_MANAGER = "promethios-ingest"
#: Field manager of ``status.usage`` (budgets), on GovernedAgents and GovernancePolicies.
BUDGET_FIELD_MANAGER = "promethios-budgets"

#: Recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT_APP = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
#: ``app.kubernetes.io/managed-by`` value on every child the operator writes.
MANAGED_BY = OPERATOR_FIELD_MANAGER

#: The GovernedAgent a child belongs to (its name; the namespace is the child's own).
LABEL_AGENT = f"{PREFIX}/agent"
#: What a child is for (``api-key``, ``sidecar-config``, ``agent``, ``quarantine``).
LABEL_COMPONENT = f"{PREFIX}/component"

#: Hash of the desired manifest last applied (catches removed labels and annotations).
ANNOTATION_APPLIED_HASH = f"{PREFIX}/applied-hash"
#: Hash of the sidecar's config.json on the pod template (a config change rolls the pods).
ANNOTATION_CONFIG_HASH = f"{PREFIX}/config-hash"
#: The agent's governance identity, on its API-key Secret.
ANNOTATION_IDENTITY = f"{PREFIX}/governance-identity"
