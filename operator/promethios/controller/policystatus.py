"""``GovernancePolicy.status``: written by the operator, which renders policies for sidecars.

One writer (field manager ``promethios-operator``): ``observedGeneration`` and a ``Ready``
condition saying whether the sidecar can enforce the spec as written. The CRD schema
refuses most bad specs; what it cannot check (a blocked pattern that is not a valid Python
regular expression, for one) reads as Ready=False/``InvalidSpec`` with the fields named.
Written only when the generation or the verdict changed, so the write's own watch event
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic

from ..api.common import API_VERSION, GROUP, VERSION
from ..api.conditions import INVALID_SPEC, READY, VALID, format_time, transition_time
from ..api.policy import GovernancePolicySpec
from ..kube import apply as kapply
from .context import ReconcileContext

log = logging.getLogger(__name__)


def verdict(spec: Mapping[str, Any]) -> tuple[str, str, str]:
    """(status, reason, message) of Ready for a policy spec (pure)."""
    try:
        GovernancePolicySpec.model_validate(spec)
    except pydantic.ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "spec" for e in error.errors()})
        return "False", INVALID_SPEC, "invalid field(s): " + ", ".join(f"spec.{f}" for f in fields)
    return "True", VALID, "the sidecars enforce this policy"


def desired_status(body: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """The status to write, or None when the stored one already says it (pure)."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    generation = metadata.get("generation")
    ready, reason, message = verdict(body.get("spec") or {})
    previous: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == READY), {}
    )
    if (
        status.get("observedGeneration") == generation
        and previous.get("status") == ready
        and previous.get("reason") == reason
        and previous.get("message") == message
    ):
        return None
    since = transition_time(
        previous.get("status"), previous.get("lastTransitionTime"), ready, format_time(now)
    )
    condition = {"type": READY, "status": ready, "reason": reason, "message": message,
                 "lastTransitionTime": since, "observedGeneration": generation}  # fmt: skip
    return {"observedGeneration": generation, "conditions": [condition]}


def register(ctx: ReconcileContext, registry: kopf.OperatorRegistry) -> None:
    """Keep every watched GovernancePolicy's status current."""

    @kopf.on.event(GROUP, VERSION, "governancepolicies", registry=registry, id="policy-status")
    def policy_status(body: Mapping[str, Any], **_: Any) -> None:
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return
        status = desired_status(body, datetime.now(UTC))
        if status is None:
            return
        metadata = body["metadata"]
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "GovernancePolicy",
            "metadata": {"namespace": metadata["namespace"], "name": metadata["name"]},
            "status": status,
        }
        try:
            kapply.apply(ctx.client, manifest, subresource="status")
        except kapply.ApiException as error:
            log.warning(
                "status of GovernancePolicy %s/%s: HTTP %s",
                metadata["namespace"],
                metadata["name"],
                error.status,
            )
