"""The model proxy: OpenAI- and Anthropic-compatible endpoints, policy on every call.

The agent calls the sidecar as if it were the provider, without any credential;
only the allowlisted routes of the provider's dialect are forwarded (see
:mod:`.routes`). The sidecar reads the body within its limits (see
:mod:`.bounds`), checks the policy, adds the provider credential it holds (any
credential the agent sent is dropped), forwards to ``provider.base_url``, and
hands the answer to :mod:`.relay` to be checked (incrementally for SSE streams)
and returned. Every finding is spooled as a violation before the agent gets its
answer.

Refusals (``enforce`` mode) look like the providers' own errors:
``{"type": "error", "error": {"type": "policy_violation", "code": <violation type>,
"message": ..., "rule": <policy rule>}}`` with HTTP 403, or 429 plus
``Retry-After`` for rate limits and the budget; a breached sidecar limit is a
413/400/503 whose message names the limit.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from aiohttp import web

from .allowance import Allowance
from .bounds import LimitExceeded, Reservation, check_json_shape, read_bounded
from .budgetgate import BudgetGate
from .policy import Finding, PolicyEngine
from .relay import (
    INLINE_INSPECTION_BYTES,
    CallInfo,
    Relay,
    limit_error,
    plain_error,
    policy_error,
)
from .routes import Dialect, Route, RouteRefusal, dialect_of, resolve
from .state import SidecarState
from .usage import OPERATIONS, CallMeter, output_bounds
from .walk import string_values

log = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"

#: The agent's request headers forwarded to the provider (an allow-list: the agent must
#: not steer the held credential to another organization or project, nor smuggle
#: routing headers to a proxy in front of the provider). Prefixes, lower case.
PASS_REQUEST_PREFIXES = (
    "accept",  # accept, accept-language (not accept-encoding: dropped below)
    "content-type",
    "user-agent",
    "idempotency-key",
    "x-request-id",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "x-stainless-",  # the official SDKs' client description
)
DROP_REQUEST_HEADERS = frozenset({"accept-encoding"})  # the sidecar must read the answer
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
READ_CHUNK = 65_536


def upstream_url(base_url: str, path: str) -> str:
    """Join the provider base URL and an agent path (``.../v1`` + ``/v1/x`` -> ``.../v1/x``)."""
    base = base_url.rstrip("/")
    if base.endswith("/v1") and path.startswith("/v1/"):
        path = path[3:]
    return base + path


@dataclass
class PreparedCall:
    """A call that passed its content checks, reduced to what forwarding it needs.

    The parsed body is not kept: only the bytes to send (the agent's own bytes
    when nothing was redacted) and what the answer side needs.
    """

    data: bytes | bytearray
    info: CallInfo
    findings: list[Finding]

    @property
    def blocked(self) -> Finding | None:
        """The first finding that blocks, if any."""
        return next((f for f in self.findings if f.blocks), None)


def prepare_call(engine: PolicyEngine, raw: bytes | bytearray) -> PreparedCall | web.Response:
    """Parse and inspect a call body (already within the limits); or the 400 for it."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return plain_error(
            400, "invalid_request_error", "invalid_json", "request body must be a JSON object"
        )
    if engine.enforce and engine.inspects_responses and _wants_logprobs(body):
        return plain_error(
            400,
            "invalid_request_error",
            "logprobs_not_inspectable",
            "logprobs spell the completion out token by token, past redaction: "
            "not available while the governance policy inspects completions",
        )
    model = body.get("model")
    model = model if isinstance(model, str) else None
    findings: list[Finding] = []
    model_finding = engine.check_model(model)
    if model_finding is not None:
        findings.append(model_finding)
    verdict = engine.inspect_payload(body, "request")
    del body  # only the (redacted) payload from here on: the original's strings can go
    findings.extend(verdict.findings)
    chars = sum(len(text) for text in string_values(verdict.payload))
    data = json.dumps(verdict.payload).encode() if verdict.findings else raw
    cap, choices = output_bounds(verdict.payload)
    return PreparedCall(data, CallInfo(model, chars, len(data), cap, choices), findings)


class ModelProxy:
    """The aiohttp handlers of the model proxy."""

    def __init__(
        self,
        state: SidecarState,
        session: aiohttp.ClientSession,
        allowance: Allowance | None = None,
    ) -> None:
        self.state = state
        self.session = session
        self.relay = Relay(state)
        self.gate = BudgetGate(state, allowance)

    @property
    def dialect(self) -> Dialect:
        """The dialect of the configured provider (the config may be reloaded)."""
        return dialect_of(self.state.store.config.provider.type)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every ``/v1/...`` request: forwarded only if its route is on the allowlist."""
        route = resolve(request.method, request.rel_url.raw_path, self.dialect)
        if isinstance(route, RouteRefusal):
            return plain_error(route.status, "invalid_request_error", route.code, route.message)
        if route.call:
            return await self.call(request, route)
        return await self.models(request, route)

    # -- request side ------------------------------------------------------------

    async def models(self, request: web.Request, route: Route) -> web.StreamResponse:
        """``GET /v1/models[/{id}]``: forwarded, no policy (lists, never calls, a model)."""
        if self.state.store.config.quarantined:
            self.relay.outcome(route, "quarantined")
            return quarantined_error()
        return await self._forward_plain(request, route)

    async def call(self, request: web.Request, route: Route) -> web.StreamResponse:
        """A model call: read within limits, check, forward, check the answer."""
        started = self.state.clock()
        meter = CallMeter(OPERATIONS.get(route.path, "chat"))
        response: web.StreamResponse | None = None
        try:
            response = await self._checked_call(request, route, meter)
            return response
        finally:
            elapsed = self.state.clock() - started
            self.state.record_call(elapsed)
            self.state.metrics.upstream_latency.labels(endpoint=route.path).observe(elapsed)
            self._observe(meter, elapsed, response)

    def _observe(
        self, meter: CallMeter, elapsed: float, response: web.StreamResponse | None
    ) -> None:
        """GenAI semantic-convention metrics and the governance overhead of one call."""
        metrics = self.state.metrics
        labels = (meter.operation, self.state.store.config.provider.type,
                  metrics.model_label(meter.model))  # fmt: skip
        status = response.status if response is not None else 500
        metrics.operation_duration.labels(*labels, str(status) if status >= 400 else "").observe(
            elapsed
        )
        if meter.usage is not None:
            metrics.token_usage.labels(*labels, "input").observe(meter.usage[0])
            metrics.token_usage.labels(*labels, "output").observe(meter.usage[1])
        metrics.overhead.observe(meter.governance if meter.status is not None else elapsed)

    async def _checked_call(
        self, request: web.Request, route: Route, meter: CallMeter
    ) -> web.StreamResponse:
        limits = self.state.store.config.limits
        try:
            raw, reservation = await read_bounded(
                request.content.iter_chunked(READ_CHUNK),
                request.content_length,
                ("maxRequestBytes", limits.max_request_bytes),
                self.state.buffers,
                "the request body",
            )
        except LimitExceeded as error:
            self.relay.outcome(route, "too_large")
            return limit_error(error)
        try:
            prepared = await self._prepare(route, raw)
            del raw  # the prepared call holds the bytes to send, and nothing else of the body
            if isinstance(prepared, PreparedCall):
                meter.model = prepared.info.model
                prepared.info = replace(prepared.info, meter=meter)
            return await self._checked_forward(request, route, prepared, reservation)
        finally:
            await reservation.release()

    async def _prepare(self, route: Route, raw: bytearray) -> PreparedCall | web.Response:
        limits = self.state.store.config.limits
        try:
            check_json_shape(raw, limits.max_json_depth, limits.max_json_nodes)
        except LimitExceeded as error:
            self.relay.outcome(route, "too_large")
            return limit_error(error)
        if len(raw) > INLINE_INSPECTION_BYTES:
            return await self.state.inspect_aside(prepare_call, self.state.engine, raw)
        return prepare_call(self.state.engine, raw)

    async def _checked_forward(
        self,
        request: web.Request,
        route: Route,
        prepared: PreparedCall | web.Response,
        reservation: Reservation,
    ) -> web.StreamResponse:
        if isinstance(prepared, web.Response):
            return prepared
        engine = self.state.engine
        await self.state.report(prepared.findings, prepared.info.extra)
        blocked = prepared.blocked
        if blocked is not None:
            self.relay.outcome(route, "blocked")
            return policy_error(blocked, 403)
        if self.state.store.config.quarantined:  # inspected and reported, never forwarded
            self.relay.outcome(route, "quarantined")
            return quarantined_error()
        # Only calls that pass the content checks count against the rate limits.
        limited = await self._check_limits(engine, prepared.info.extra)
        if limited is not None:
            self.relay.outcome(route, "rate_limited")
            return limited
        budget = await self.gate.admit(engine, prepared.info, route.path)
        if isinstance(budget, web.Response):
            self.relay.outcome(route, "over_budget")
            return budget
        info = prepared.info
        try:
            return await self._forward(request, route, engine, prepared, reservation)
        finally:
            if info.meter is not None:
                self.gate.settle(budget, info.meter, info)

    async def _check_limits(
        self, engine: PolicyEngine, extra: dict[str, Any] | None
    ) -> web.Response | None:
        refusal = self.state.limiter.check(self.state.clock())
        if refusal is None:
            return None
        finding = engine.limit_finding(refusal.code, refusal.retry_after, refusal.detail)
        if self.state.should_report_limit(refusal.code):
            await self.state.report([finding], extra)
        if not finding.blocks:
            self.state.limiter.requests.add(self.state.clock())  # audit: the call still happens
            return None
        return policy_error(finding, 429, refusal.retry_after)

    def _upstream_headers(self, request: web.Request) -> dict[str, str]:
        """The agent's allowed headers, plus the provider credential."""
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower().startswith(PASS_REQUEST_PREFIXES) and k.lower() not in DROP_REQUEST_HEADERS
        }
        credential = self.state.store.current.provider_credential
        if self.dialect == "anthropic":
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
            if credential:
                headers["x-api-key"] = credential
        elif credential:
            headers["Authorization"] = f"Bearer {credential}"
        return headers

    # -- forwarding --------------------------------------------------------------

    async def _forward(
        self,
        request: web.Request,
        route: Route,
        engine: PolicyEngine,
        prepared: PreparedCall,
        reservation: Reservation,
    ) -> web.StreamResponse:
        url = upstream_url(self.state.store.config.provider.base_url, route.path)
        headers = self._upstream_headers(request)
        headers["Content-Type"] = "application/json"
        meter = prepared.info.meter
        if meter is not None:  # everything so far was the sidecar's own work
            meter.governance += time.perf_counter() - meter.started
        try:
            async with self.session.post(
                url, data=prepared.data, headers=headers, timeout=UPSTREAM_TIMEOUT
            ) as upstream:
                if meter is not None:
                    meter.status = upstream.status
                prepared.data = b""  # sent: its bytes go back to the budget
                await reservation.release()
                if upstream.content_type == "text/event-stream":
                    return await self.relay.stream(request, route, upstream, engine, prepared.info)
                return await self.relay.answer(route, upstream, engine, prepared.info)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("model provider unreachable: %s", error)
            self.relay.outcome(route, "upstream_error")
            return plain_error(
                502,
                "upstream_error",
                "upstream_unreachable",
                "the model provider could not be reached",
            )

    async def _forward_plain(self, request: web.Request, route: Route) -> web.Response:
        url = upstream_url(self.state.store.config.provider.base_url, route.path)
        try:
            async with self.session.get(
                url,
                headers=self._upstream_headers(request),
                params=request.query,
                timeout=UPSTREAM_TIMEOUT,
            ) as upstream:
                return await self.relay.answer(route, upstream, self.state.engine, None)
        except (aiohttp.ClientError, TimeoutError):
            return plain_error(
                502,
                "upstream_error",
                "upstream_unreachable",
                "the model provider could not be reached",
            )


def _wants_logprobs(body: dict[str, Any]) -> bool:
    """True if the call asks for log probabilities (a per-token copy of the completion)."""
    return bool(body.get("logprobs")) or bool(body.get("top_logprobs"))


def quarantined_error() -> web.Response:
    """The refusal of every model call while the agent is quarantined."""
    return plain_error(
        403,
        "policy_violation",
        "agent_quarantined",
        "this agent is quarantined: model calls are refused until its breach is acknowledged",
    )
