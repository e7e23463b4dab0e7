"""The agent-facing reporting API: the ingest API's three endpoints, without a key.

The agent posts exactly the seed's shapes to the sidecar; the sidecar checks
them against the wire models (a 400 names the fields) and answers itself,
202, on its own clock:

- heartbeats and metrics are folded into the sidecar's own periodic reports
  (see :mod:`.folding`): nothing reaches the ingest API at the agent's pace, so
  a chatty agent cannot use up the per-agent budget the violations need;
- violations (and those inside a metrics report) go to the agent's spool,
  within a local budget (``agentViolationsPerMinute``, 429 beyond), answered
  202 once on disk and delivered after the sidecar's own findings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from promethios.api.wire import (
    Accepted,
    ErrorBody,
    HeartbeatReport,
    MetricsReport,
    PolicyViolation,
    ViolationReport,
)

from .bounds import LimitExceeded, check_json_shape, read_bounded
from .state import SidecarState, new_idempotency_key, utc_iso

READ_CHUNK = 65_536


def invalid(message: str, error: ValidationError | None = None) -> web.Response:
    """A 400 in the ingest API's error shape."""
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
        for e in (error.errors() if error else [])
    ]
    body = ErrorBody(error="invalid_report", message=message, fields=fields)
    return web.json_response(body.model_dump(), status=400)


def refused(error: LimitExceeded) -> web.Response:
    """A breached sidecar limit, in the ingest API's error shape (names the limit)."""
    body = ErrorBody(error="limit_exceeded", message=error.message)
    return web.json_response(body.model_dump(), status=error.status)


class ReportingApi:
    """Handlers for ``/api/v1/agents/heartbeat`` and ``/api/v1/governance/*``."""

    def __init__(self, state: SidecarState) -> None:
        self.state = state

    async def _parse(self, request: web.Request, model: type[BaseModel]) -> Any:
        limits = self.state.store.config.limits
        try:
            raw, reservation = await read_bounded(
                request.content.iter_chunked(READ_CHUNK),
                request.content_length,
                ("maxReportBytes", limits.max_report_bytes),
                self.state.buffers,
                "the report",
            )
        except LimitExceeded as error:
            return refused(error)
        try:
            check_json_shape(raw, limits.max_json_depth, limits.max_json_nodes)
            body = json.loads(raw)
        except LimitExceeded as error:
            return refused(error)
        except (ValueError, RecursionError):
            return invalid("request body is not JSON")
        finally:
            await reservation.release()
        if isinstance(body, dict):
            config = self.state.store.config
            body["agentId"] = config.agent_id
            if model is MetricsReport:
                body["governanceIdentity"] = config.governance_identity
        try:
            return model.model_validate(body)
        except ValidationError as error:
            return invalid(f"not a valid {model.__name__}", error)

    async def heartbeat(self, request: web.Request) -> web.Response:
        """Fold the agent's heartbeat into the sidecar's (sent early if its status changed)."""
        report = await self._parse(request, HeartbeatReport)
        if isinstance(report, web.Response):
            return report
        state = self.state
        if state.agent.fold_heartbeat(report, state.clock(), state.wall_clock()):
            state.heartbeat_due.set()
        return accepted(1)

    async def metrics(self, request: web.Request) -> web.Response:
        """Fold the agent's metrics into the sidecar's own; spool the violations in it."""
        report = await self._parse(request, MetricsReport)
        if isinstance(report, web.Response):
            return report
        if report.metrics.violations:
            refusal = await self._spool(report.metrics.violations)
            if refusal is not None:
                return refusal
        self.state.agent.fold_metrics(report)
        return accepted(1)

    async def violations(self, request: web.Request) -> web.Response:
        """Spool the agent's violations (one or a batch); 202 once they are on disk."""
        report = await self._parse(request, ViolationReport)
        if isinstance(report, web.Response):
            return report
        violations = report.all_violations()
        return await self._spool(violations) or accepted(len(violations))

    async def _spool(self, violations: list[PolicyViolation]) -> web.Response | None:
        """Spool the agent's violations within its budget; the 429 if it is used up."""
        state = self.state
        wait = state.agent_violation_budget.take(len(violations), state.clock())
        if wait is not None:
            return too_many(wait, state.store.config.limits.agent_violations_per_minute)
        now = utc_iso(state.wall_clock())
        spooled = []
        for violation in violations:
            body = violation.model_dump(mode="json", by_alias=True, exclude_none=True)
            body.setdefault("idempotencyKey", new_idempotency_key())
            body.setdefault("timestamp", now)
            spooled.append(body)
        await state.spool_violations(spooled, from_agent=True)
        return None


def accepted(count: int) -> web.Response:
    """The 202 the agent gets once its report is folded in or on disk."""
    return web.json_response(Accepted(accepted=count).model_dump(), status=202)


def too_many(wait: float, per_minute: int) -> web.Response:
    """The 429 for an agent reporting violations faster than its budget."""
    body = ErrorBody(
        error="rate_limited",
        message=f"more than agentViolationsPerMinute ({per_minute}) self-reported violations",
    )
    retry = "60" if not math.isfinite(wait) else str(max(1, math.ceil(wait)))
    return web.json_response(body.model_dump(), status=429, headers={"Retry-After": retry})
