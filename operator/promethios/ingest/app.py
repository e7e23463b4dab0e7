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

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..api import wire
from ..api.allowance import PATH_ALLOWANCE, AllowanceRequest
from .httpinput import ApiError, Model, idempotency_key, parse_body, parse_range, read_body
from .keystore import AuthOutcome
from .openapi import openapi_document
from .ratelimit import RateLimiter, retry_after_header
from .records import Outcome
from .service import IngestService
from .state import AgentState
from .summary import SummaryBuilder, in_order
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
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# -- authentication and rate limits ---------------------------------------------------


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


async def _report(
    request: web.Request, model: type[Model]
) -> tuple[IngestService, AgentState, Model]:
    """Authenticate, rate-limit, read and validate a report; check its agentId."""
    service = request.app[SERVICE_KEY]
    state = _authenticate(request, service)
    _check_rate(request, state.config.agent_id)
    report = parse_body(model, await read_body(request, service.settings.max_body_bytes))
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
    key = idempotency_key(request, report.idempotency_key)
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
    key = idempotency_key(request, report.idempotency_key)
    outcome = await _guard(service.metrics_report(state, report, key))
    return _accepted(outcome, 200 if outcome.violations or outcome.lost else 202)


async def violations(request: web.Request) -> web.Response:
    """``POST /api/v1/governance/violations``: 200 only after the status records them."""
    service, state, report = await _report(request, wire.ViolationReport)
    key = idempotency_key(request, report.idempotency_key)
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
    body = await build_summary(agents, seconds, service.clock())
    return web.Response(body=body, content_type="application/json")


#: Agents per batch of a summary: about 20 ms of the event loop each on this machine.
SUMMARY_BATCH = 200


async def build_summary(agents: list[AgentState], seconds: float, now: float) -> bytes:
    """The summary document, built a batch at a time so the reports are not held up."""
    builder = SummaryBuilder(seconds, now)
    ordered = in_order(agents)
    for start in range(0, len(ordered), SUMMARY_BATCH):
        builder.add(ordered[start : start + SUMMARY_BATCH])
        await asyncio.sleep(0)
    return builder.encode()


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
