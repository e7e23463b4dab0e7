"""The agent-facing reporting API: the ingest API's three endpoints, without a key.

The agent posts exactly the seed's shapes to the sidecar; the sidecar checks
them against the wire models, stamps its own ``agentId`` (the key it holds is
bound to that identity anyway), adds the credentials and forwards. Heartbeats
and metrics are forwarded synchronously (the ingest API's answer is returned);
violations go through the spool, so they are answered 202 once on disk and
delivered with the sidecar's own, retried until acknowledged.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from promethios.api.wire import (
    PATH_HEARTBEAT,
    PATH_METRICS,
    Accepted,
    ErrorBody,
    HeartbeatReport,
    MetricsReport,
    ViolationReport,
)

from .bounds import LimitExceeded, check_json_shape, read_bounded
from .delivery import IngestClient
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

    def __init__(self, state: SidecarState, client: IngestClient) -> None:
        self.state = state
        self.client = client

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
            body["agentId"] = self.state.store.config.agent_id
            if model is MetricsReport:
                body.setdefault("governanceIdentity", self.state.store.config.governance_identity)
        try:
            return model.model_validate(body)
        except ValidationError as error:
            return invalid(f"not a valid {model.__name__}", error)

    async def heartbeat(self, request: web.Request) -> web.Response:
        """Forward the agent's heartbeat."""
        report = await self._parse(request, HeartbeatReport)
        if isinstance(report, web.Response):
            return report
        return await self._forward(PATH_HEARTBEAT, report)

    async def metrics(self, request: web.Request) -> web.Response:
        """Forward the agent's metrics report."""
        report = await self._parse(request, MetricsReport)
        if isinstance(report, web.Response):
            return report
        return await self._forward(PATH_METRICS, report)

    async def violations(self, request: web.Request) -> web.Response:
        """Spool the agent's violations (one or a batch); 202 once they are on disk."""
        report = await self._parse(request, ViolationReport)
        if isinstance(report, web.Response):
            return report
        now = utc_iso(self.state.wall_clock())
        spooled = []
        for violation in report.all_violations():
            body = violation.model_dump(mode="json", by_alias=True, exclude_none=True)
            body.setdefault("idempotencyKey", new_idempotency_key())
            body.setdefault("timestamp", now)
            spooled.append(body)
        await self.state.spool_violations(spooled)
        return web.json_response(Accepted(accepted=len(spooled)).model_dump(), status=202)

    async def _forward(self, path: str, report: BaseModel) -> web.Response:
        payload = report.model_dump(mode="json", by_alias=True, exclude_none=True)
        status, body, content_type = await self.client.forward(path, payload)
        return web.Response(body=body, status=status, content_type=content_type or None)
