"""The ingest HTTP API (aiohttp): routes, authentication, error mapping, OpenAPI.

Two applications on two listeners. :func:`build_app`, the report API (HTTPS when a
certificate is given): ``POST /api/v1/agents/heartbeat`` (202),
``POST /api/v1/governance/metrics`` (202), ``POST /api/v1/governance/violations`` (200,
after the status write), ``POST /api/v1/budgets/allowance`` (200, after the usage
write), ``GET /api/v1/governance/summary?range=1h`` (the read token, or
a Kubernetes token when the composition root gives the app a :data:`SummaryAuth`),
``GET /openapi.json``. :func:`build_metrics_app`, plain HTTP on its own port for
Prometheus and the kubelet: ``/metrics``, ``/healthz``, ``/readyz``. ``/metrics`` names
every namespace's agents, so it is not served where the agents report.

Every error is JSON :class:`~promethios.api.wire.ErrorBody`: 400 unparsable JSON,
401 missing/unknown/expired key, 403 key of another agent or mismatched identity,
404/405 unknown route or method, 413 body over the limit, 415 not ``application/json``,
422 validation (``fields`` names each offending field by its wire path), 429 rate limit
(``Retry-After``), 503 agent not yet known or status write failed.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from ..api import wire
from ..api.allowance import PATH_ALLOWANCE, AllowanceRequest
from .keystore import AuthOutcome
from .openapi import openapi_document
from .ratelimit import RateLimiter, retry_after_header
from .records import Outcome
from .service import IngestService
from .state import AgentState
from .summary import fleet_summary
from .writer import StatusWriteError

log = logging.getLogger(__name__)
SERVICE_KEY = web.AppKey("service", IngestService)
LIMITERS_KEY = web.AppKey("limiters", dict[str, RateLimiter])
#: (Kubernetes bearer token, candidate namespaces) -> the namespaces it may see, None when
#: the token is not authenticated. Wired by the composition root (the dashboard's reviews).
SummaryAuth = Callable[[str, set[str]], Awaitable[set[str] | None]]
SUMMARY_AUTH_KEY: web.AppKey[SummaryAuth] = web.AppKey("summary_auth")
#: Rate-limit budgets by endpoint: violations never share one with the chattier reports.
BUDGET_OF = {
    "heartbeat": "reports",
    "metrics": "reports",
    "violations": "violations",
    "allowance": "allowance",
}
Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_RANGE = re.compile(r"^([0-9]{1,7})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_IDEMPOTENCY = re.compile(wire.IDEMPOTENCY_KEY_PATTERN)


class ApiError(Exception):
    """An error response with an :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.fields = fields or []
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The JSON response."""
        body = wire.ErrorBody(error=self.error, message=self.message, fields=self.fields)
        return web.Response(
            status=self.status,
            body=body.model_dump_json().encode(),
            content_type="application/json",
            headers=self.headers,
        )


def _endpoint(request: web.Request) -> str:
    route = request.match_info.route
    return route.name if route is not None and route.name else "other"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to an ErrorBody and record request metrics."""
    service = request.app[SERVICE_KEY]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as error:
        response = error.response()
    except web.HTTPException as error:  # aiohttp's own 404/405/413
        response = ApiError(
            error.status, error.reason.lower().replace(" ", "_"), error.reason
        ).response()
    except Exception:
        log.exception("unhandled error on %s", request.path)  # never the body: it may hold data
        response = ApiError(500, "internal", "internal error").response()
    service.metrics.observe_request(
        _endpoint(request), response.status, time.perf_counter() - started
    )
    return response


# -- request parsing ------------------------------------------------------------------------


def _authenticate(request: web.Request, service: IngestService) -> AgentState:
    headers = request.headers
    result = service.keystore.authenticate(
        headers.get("Authorization"),
        headers.get(wire.HEADER_AGENT_ID),
        headers.get(wire.HEADER_GOVERNANCE_ID),
        service.clock(),
        BUDGET_OF.get(_endpoint(request), "reports"),
    )
    if result.outcome is AuthOutcome.UNAUTHENTICATED:
        raise ApiError(
            401, "unauthenticated", result.message, headers={"WWW-Authenticate": "Bearer"}
        )
    if result.outcome is AuthOutcome.FORBIDDEN or result.entry is None:
        raise ApiError(403, "forbidden", result.message)
    state = service.agent(result.entry.agent_id)
    if state is None:
        raise ApiError(
            503, "agent_unknown", "agent not known yet; retry", headers={"Retry-After": "2"}
        )
    owner = result.entry.owner_uid
    if owner is not None and state.config.uid and owner != state.config.uid:
        # The Secret belongs to an earlier agent of the same name (or claims to).
        raise ApiError(403, "forbidden", "API key does not belong to this GovernedAgent")
    return state


def _check_rate(request: web.Request, agent_id: str) -> None:
    limiter = request.app[LIMITERS_KEY][BUDGET_OF.get(_endpoint(request), "reports")]
    wait = limiter.take(agent_id, time.monotonic())
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            "too many reports; slow down",
            headers={"Retry-After": retry_after_header(wait)},
        )


async def _body(request: web.Request, limit: int) -> bytes:
    """The whole body, however its bytes arrive (one read returns only what is buffered);
    413 as soon as it passes ``limit``, before the rest is read."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    too_large = ApiError(413, "payload_too_large", f"body larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _parse(model: type[Model], body: bytes) -> Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        if any(item["type"] in ("json_invalid", "json_type") for item in errors):
            raise ApiError(400, "invalid_json", "body is not valid JSON") from None
        fields = [{"field": _field(item["loc"]), "message": item["msg"]} for item in errors[:20]]
        names = ", ".join(f["field"] for f in fields)
        raise ApiError(422, "validation_failed", f"invalid field(s): {names}", fields) from None


def _idempotency_key(request: web.Request, body_key: str | None) -> str | None:
    header = request.headers.get(wire.HEADER_IDEMPOTENCY_KEY)
    if header is not None and not _IDEMPOTENCY.match(header):
        raise ApiError(
            422,
            "validation_failed",
            "invalid Idempotency-Key header",
            [
                {
                    "field": "header.Idempotency-Key",
                    "message": "must match " + wire.IDEMPOTENCY_KEY_PATTERN,
                }
            ],
        )
    return body_key or header


async def _report(
    request: web.Request, model: type[Model]
) -> tuple[IngestService, AgentState, Model]:
    """Authenticate, rate-limit, read and validate a report; check its agentId."""
    service = request.app[SERVICE_KEY]
    state = _authenticate(request, service)
    _check_rate(request, state.config.agent_id)
    report = _parse(model, await _body(request, service.settings.max_body_bytes))
    if getattr(report, "agent_id", None) != state.config.agent_id:
        raise ApiError(
            403,
            "forbidden",
            "agentId does not match X-Agent-ID",
            [{"field": "agentId", "message": "must equal the X-Agent-ID header"}],
        )
    return service, state, report


_ONE_ACCEPTED = wire.Accepted(accepted=1, duplicates=0).model_dump_json().encode()


def _accepted(outcome: Outcome, status: int) -> web.Response:
    if outcome.accepted == 1 and outcome.duplicates == 0:
        body = _ONE_ACCEPTED  # the common case, rendered once
    else:
        model = wire.Accepted(accepted=outcome.accepted, duplicates=outcome.duplicates)
        body = model.model_dump_json().encode()
    return web.Response(status=status, body=body, content_type="application/json")


# -- handlers -------------------------------------------------------------------------------


async def heartbeat(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/heartbeat``: acknowledged from memory (202)."""
    service, state, report = await _report(request, wire.HeartbeatReport)
    key = _idempotency_key(request, report.idempotency_key)
    return _accepted(service.heartbeat(state, report, key), 202)


async def metrics(request: web.Request) -> web.Response:
    """``POST /api/v1/governance/metrics``: 202, or 200 once embedded violations are written."""
    service, state, report = await _report(request, wire.MetricsReport)
    if report.governance_identity != request.headers.get(wire.HEADER_GOVERNANCE_ID):
        raise ApiError(
            403,
            "forbidden",
            "governanceIdentity does not match X-Governance-ID",
            [{"field": "governanceIdentity", "message": "must equal X-Governance-ID"}],
        )
    key = _idempotency_key(request, report.idempotency_key)
    outcome = await _guard(service.metrics_report(state, report, key))
    return _accepted(outcome, 200 if outcome.violations or outcome.lost else 202)


async def violations(request: web.Request) -> web.Response:
    """``POST /api/v1/governance/violations``: 200 only after the status records them."""
    service, state, report = await _report(request, wire.ViolationReport)
    key = _idempotency_key(request, report.idempotency_key)
    return _accepted(await _guard(service.violations(state, report.all_violations(), key)), 200)


async def _guard(call: Awaitable[Outcome]) -> Outcome:
    try:
        return await call
    except StatusWriteError as error:
        raise ApiError(
            503,
            "status_write_failed",
            f"not recorded yet ({error}); retry with the same key",
            headers={"Retry-After": "5"},
        ) from None


async def allowance(request: web.Request) -> web.Response:
    """``POST /api/v1/budgets/allowance``: 200 once every lease it reports is on record.

    Not before the policies are loaded: an answer without a budget that exists would let a
    sidecar drop its lease.
    """
    if not request.app[SERVICE_KEY].ready.is_set():
        raise ApiError(503, "not_ready", "policies not loaded yet", headers={"Retry-After": "2"})
    service, state, report = await _report(request, AllowanceRequest)
    try:
        answer = await service.allowance.exchange(state.config, report)
    except StatusWriteError as error:
        raise ApiError(
            503,
            "usage_write_failed",
            f"not recorded ({error}); retry",
            headers={"Retry-After": "1"},
        ) from None
    body = answer.model_dump_json(by_alias=True).encode()
    return web.Response(body=body, content_type="application/json")


async def summary(request: web.Request) -> web.Response:
    """``GET /api/v1/governance/summary?range=1h``: the read token sees every agent; a
    Kubernetes token (when :data:`SUMMARY_AUTH_KEY` is set) the namespaces it may see."""
    service = request.app[SERVICE_KEY]
    token = service.settings.read_token
    presented = request.headers.get("Authorization", "")
    agents: list[AgentState] = list(service.aggregator.agents.values())
    if token is None or not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        auth = request.app.get(SUMMARY_AUTH_KEY)
        bearer = presented[7:].strip() if presented.lower().startswith("bearer ") else ""
        namespaces = {state.config.namespace for state in agents}
        visible = await auth(bearer, namespaces) if auth is not None and bearer else None
        if visible is None:
            raise ApiError(
                401,
                "unauthenticated",
                "read token or Kubernetes token required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        agents = [state for state in agents if state.config.namespace in visible]
    seconds = parse_range(request.query.get("range", "1h"), service.settings.history_seconds)
    return web.json_response(fleet_summary(agents, seconds, service.clock()))


def parse_range(value: str, maximum: float) -> float:
    """``90s``, ``15m``, ``1h``, ``7d`` or plain seconds, within (0, maximum]."""
    match = _RANGE.match(value.strip())
    if not match:
        raise ApiError(
            422,
            "validation_failed",
            "invalid range",
            [{"field": "query.range", "message": "expected e.g. 15m, 1h, 1d or seconds"}],
        )
    seconds = float(int(match.group(1)) * _UNITS[match.group(2)])
    if not 0 < seconds <= maximum:
        raise ApiError(
            422,
            "validation_failed",
            "range out of bounds",
            [{"field": "query.range", "message": f"must be within 1s and {maximum:g}s"}],
        )
    return seconds


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``, generated from the wire models."""
    return web.json_response(openapi_document())


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: keys and agents have been loaded."""
    if not request.app[SERVICE_KEY].ready.is_set():
        raise ApiError(503, "not_ready", "agents and keys not loaded yet")
    return web.json_response({"status": "ready"})


async def metrics_scrape(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body = request.app[SERVICE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(service: IngestService, summary_auth: SummaryAuth | None = None) -> web.Application:
    """The report API around a service (the agents' listener)."""
    settings = service.settings
    # aiohttp's own limit sits above ours so our 413 (with an ErrorBody) answers first.
    app = web.Application(
        middlewares=[error_middleware], client_max_size=settings.max_body_bytes + 1024
    )
    app[SERVICE_KEY] = service
    if summary_auth is not None:
        app[SUMMARY_AUTH_KEY] = summary_auth
    app[LIMITERS_KEY] = {
        "reports": RateLimiter(settings.rate_per_second, settings.rate_burst),
        "violations": RateLimiter(
            settings.violation_rate_per_second, settings.violation_rate_burst
        ),
        "allowance": RateLimiter(settings.allowance_rate_per_second, settings.allowance_rate_burst),
    }
    app.router.add_post(wire.PATH_HEARTBEAT, heartbeat, name="heartbeat")
    app.router.add_post(wire.PATH_METRICS, metrics, name="metrics")
    app.router.add_post(wire.PATH_VIOLATIONS, violations, name="violations")
    app.router.add_post(PATH_ALLOWANCE, allowance, name="allowance")
    app.router.add_get(wire.PATH_SUMMARY, summary, name="summary")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    return app


def build_metrics_app(service: IngestService) -> web.Application:
    """Prometheus exposition and the probes (the plain-HTTP listener)."""
    app = web.Application(middlewares=[error_middleware])
    app[SERVICE_KEY] = service
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics_scrape, name="metrics_scrape")
    return app
