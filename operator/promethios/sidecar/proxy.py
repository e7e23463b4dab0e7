"""The model proxy: OpenAI- and Anthropic-compatible endpoints, policy on every call.

The agent calls the sidecar as if it were the provider, without any credential;
only the allowlisted routes of the provider's dialect are forwarded (see
:mod:`.routes`). The sidecar checks the policy, adds the provider credential it
holds (any credential the agent sent is dropped), forwards to ``provider.base_url``, checks
the answer (incrementally for SSE streams) and returns it. Every finding is
spooled as a violation before the agent gets its answer.

Refusals (``enforce`` mode) look like the providers' own errors:
``{"type": "error", "error": {"type": "policy_violation", "code": <violation type>,
"message": ..., "rule": <policy rule>}}`` with HTTP 403, or 429 plus
``Retry-After`` for rate limits and the budget.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import aiohttp
from aiohttp import web

from .policy import Finding, PolicyEngine
from .ratelimit import estimate_tokens
from .routes import Dialect, Route, RouteRefusal, dialect_of, resolve
from .sse import SseRewriter, error_body, usage_tokens
from .state import SidecarState
from .walk import string_values

log = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"

#: Request headers never forwarded: credentials (the sidecar sets its own) and hop-by-hop.
DROP_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "accept-encoding",
        "te",
        "trailer",
    }
)
#: Response headers passed back to the agent (an allow-list: nothing else can leak).
PASS_RESPONSE_PREFIXES = (
    "content-type",
    "x-request-id",
    "request-id",
    "openai-",
    "anthropic-",
    "x-ratelimit-",
    "retry-after",
)
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)


def upstream_url(base_url: str, path: str) -> str:
    """Join the provider base URL and an agent path (``.../v1`` + ``/v1/x`` -> ``.../v1/x``)."""
    base = base_url.rstrip("/")
    if base.endswith("/v1") and path.startswith("/v1/"):
        path = path[3:]
    return base + path


def policy_error(finding: Finding, status: int, retry_after: float | None = None) -> web.Response:
    """The agent-facing refusal for a finding."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return web.json_response(
        {"type": "error", "error": error_body(finding)}, status=status, headers=headers
    )


def plain_error(status: int, type_: str, code: str, message: str) -> web.Response:
    """A non-policy error (bad request, upstream unreachable), in the same shape."""
    body = {"type": "error", "error": {"type": type_, "code": code, "message": message}}
    return web.json_response(body, status=status)


class ModelProxy:
    """The aiohttp handlers of the model proxy."""

    def __init__(self, state: SidecarState, session: aiohttp.ClientSession) -> None:
        self.state = state
        self.session = session

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
        return await self._forward_plain(request, route)

    async def call(self, request: web.Request, route: Route) -> web.StreamResponse:
        """A model call: check, forward, check the answer."""
        started = self.state.clock()
        endpoint = route.path
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return plain_error(
                400, "invalid_request_error", "invalid_json", "request body must be a JSON object"
            )
        engine = self.state.engine
        if engine.enforce and engine.inspects_responses and _wants_logprobs(body):
            return plain_error(
                400,
                "invalid_request_error",
                "logprobs_not_inspectable",
                "logprobs spell the completion out token by token, past redaction: "
                "not available while the governance policy inspects completions",
            )
        refusal, to_forward = await self._check_request(engine, body)
        if refusal is not None:
            outcome = "rate_limited" if refusal.status == 429 else "blocked"
            self.state.metrics.requests.labels(endpoint=endpoint, outcome=outcome).inc()
            return refusal
        try:
            response = await self._forward(request, route, engine, body, to_forward)
        finally:
            elapsed = self.state.clock() - started
            self.state.record_call(elapsed)
            self.state.metrics.upstream_latency.labels(endpoint=endpoint).observe(elapsed)
        return response

    async def _check_request(
        self, engine: PolicyEngine, body: dict[str, Any]
    ) -> tuple[web.Response | None, Any]:
        """``(refusal, None)`` if the call is refused, else ``(None, payload to forward)``.

        The payload is ``body`` itself when nothing was redacted, so the agent's bytes
        are forwarded unchanged.
        """
        model = body.get("model")
        extra = {"model": model} if isinstance(model, str) else None
        findings: list[Finding] = []
        model_finding = engine.check_model(model if isinstance(model, str) else None)
        if model_finding is not None:
            findings.append(model_finding)
        verdict = engine.inspect_payload(body, "request")
        findings.extend(verdict.findings)
        blocked = next((f for f in findings if f.blocks), None)
        await self.state.report(findings, extra)
        if blocked is not None:
            return policy_error(blocked, 403), None
        # Only calls that pass the content checks count against the rate limits.
        limited = await self._check_limits(engine, extra)
        if limited is not None:
            return limited, None
        return None, verdict.payload if verdict.findings else body

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
        """The agent's headers minus credentials and hop-by-hop, plus the provider credential."""
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST_HEADERS
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
        original: dict[str, Any],
        payload: Any,
    ) -> web.StreamResponse:
        url = upstream_url(self.state.store.config.provider.base_url, route.path)
        data = await request.read() if payload is original else json.dumps(payload).encode()
        headers = self._upstream_headers(request)
        headers["Content-Type"] = "application/json"
        try:
            async with self.session.post(
                url, data=data, headers=headers, timeout=UPSTREAM_TIMEOUT
            ) as upstream:
                if upstream.content_type == "text/event-stream":
                    return await self._stream(request, route, upstream, engine, payload)
                return await self._answer(route, upstream, engine, payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("model provider unreachable: %s", error)
            self._outcome(route, "upstream_error")
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
                return await self._answer(route, upstream, self.state.engine, None)
        except (aiohttp.ClientError, TimeoutError):
            return plain_error(
                502,
                "upstream_error",
                "upstream_unreachable",
                "the model provider could not be reached",
            )

    def _response_headers(self, upstream: aiohttp.ClientResponse) -> dict[str, str]:
        credential = self.state.store.current.provider_credential
        return {
            k: v
            for k, v in upstream.headers.items()
            if k.lower().startswith(PASS_RESPONSE_PREFIXES) and not (credential and credential in v)
        }

    async def _answer(
        self,
        route: Route,
        upstream: aiohttp.ClientResponse,
        engine: PolicyEngine,
        payload: Any,
    ) -> web.Response:
        """A whole (non-streamed) answer, of any status: check it, count its tokens, return it.

        ``payload`` is the forwarded call, None for a model listing (no tokens).
        """
        raw = await upstream.read()
        headers = self._response_headers(upstream)
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = None  # not JSON: inspected as one text
        if engine.inspects_responses:
            verdict = engine.inspect_payload(
                raw.decode("utf-8", errors="replace") if answer is None else answer, "response"
            )
            await self.state.report(verdict.findings, _model_of(payload))
            if verdict.blocked is not None:
                self._outcome(route, "blocked")
                return policy_error(verdict.blocked, 403)
            if verdict.findings:
                redacted = verdict.payload
                raw = (redacted if answer is None else json.dumps(redacted)).encode()
        if payload is not None and 200 <= upstream.status < 300 and isinstance(answer, dict):
            self._count_tokens(payload, answer, usage_tokens(answer.get("usage")))
        self._outcome(route, "forwarded" if upstream.status < 400 else "upstream_error")
        return web.Response(body=raw, status=upstream.status, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        route: Route,
        upstream: aiohttp.ClientResponse,
        engine: PolicyEngine,
        payload: Any,
    ) -> web.StreamResponse:
        """Relay an SSE stream chunk by chunk, checking deltas as they pass."""
        response = web.StreamResponse(
            status=upstream.status, headers=self._response_headers(upstream)
        )
        response.headers["Cache-Control"] = "no-cache"
        await response.prepare(request)
        rewriter = SseRewriter(engine) if engine.inspects_responses else None
        extra = _model_of(payload)
        outcome = "forwarded"
        async for chunk in upstream.content.iter_any():
            if rewriter is None:
                await response.write(chunk)
                continue
            result = rewriter.feed(chunk)
            await self.state.report(result.findings, extra)
            if result.data:
                await response.write(result.data)
            if result.blocked is not None:
                outcome = "blocked"
                break
        else:
            if rewriter is not None:
                result = rewriter.close()
                await self.state.report(result.findings, extra)
                await response.write(result.data)
        if rewriter is None:
            self._count_tokens(payload, None, None)
        else:
            self._count_tokens(payload, None, rewriter.usage_tokens, rewriter.released_chars)
        self._outcome(route, outcome)
        await response.write_eof()
        return response

    def _count_tokens(
        self, payload: Any, answer: Any, reported: int | None, streamed_chars: int = 0
    ) -> None:
        """Count a call's tokens: the upstream's ``usage``, else characters / 4."""
        tokens = reported
        if tokens is None:
            texts = string_values(payload) + string_values(answer)
            tokens = estimate_tokens(*texts) + streamed_chars // 4
        self.state.limiter.record_tokens(self.state.clock(), tokens)
        self.state.metrics.tokens.inc(tokens)

    def _outcome(self, route: Route, outcome: str) -> None:
        self.state.metrics.requests.labels(endpoint=route.path, outcome=outcome).inc()


def _wants_logprobs(body: dict[str, Any]) -> bool:
    """True if the call asks for log probabilities (a per-token copy of the completion)."""
    return bool(body.get("logprobs")) or bool(body.get("top_logprobs"))


def _model_of(payload: Any) -> dict[str, Any] | None:
    model = payload.get("model") if isinstance(payload, dict) else None
    return {"model": model} if isinstance(model, str) else None
