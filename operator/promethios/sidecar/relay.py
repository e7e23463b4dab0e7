"""The provider's answers on their way back to the agent: bounded, inspected, counted.

A whole answer is read within ``maxResponseBytes`` (holding its bytes in the
shared byte budget), checked for depth, parsed and inspected whatever its
status or content type; a stream is relayed chunk by chunk through an
:class:`~.sse.SseRewriter`, and ends with an error event if one event grows past
``maxResponseBytes`` without ending. Tokens are counted from the provider's
``usage``, else estimated from characters.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .bounds import LimitExceeded, check_json_shape, read_bounded
from .policy import Finding, PolicyEngine
from .ratelimit import estimate_tokens
from .routes import Route
from .sse import SseRewriter, error_body, usage_tokens
from .state import SidecarState
from .usage import CallMeter, StreamUsage, split_usage
from .walk import string_values

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
READ_CHUNK = 65_536
#: Bodies larger than this are inspected in a worker thread (one at a time), so that
#: the event loop keeps serving other calls and delivering violations meanwhile.
INLINE_INSPECTION_BYTES = 256 * 1024


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


def limit_error(error: LimitExceeded) -> web.Response:
    """The refusal for a breached sidecar limit; the message names the limit."""
    code = "sidecar_busy" if error.status == 503 else "limit_exceeded"
    response = plain_error(error.status, "invalid_request_error", code, error.message)
    if error.status == 503:
        response.headers["Retry-After"] = "1"
    return response


@dataclass(frozen=True)
class CallInfo:
    """What the answer side needs to know of the call it answers."""

    model: str | None
    request_chars: int  # characters in the call's strings, for token estimates
    sent_bytes: int = 0  # bytes forwarded: at least the input tokens (budgets)
    output_cap: int | None = None  # max_tokens or its spellings, if set
    choices: int = 1  # n / best_of
    meter: CallMeter | None = None  # the call's record (usage, status, time governed)

    @property
    def extra(self) -> dict[str, Any] | None:
        """Context added to the answer's violations."""
        return {"model": self.model} if self.model else None


class Relay:
    """Whole and streamed answers, for the proxy."""

    def __init__(self, state: SidecarState) -> None:
        self.state = state

    def response_headers(self, upstream: aiohttp.ClientResponse) -> dict[str, str]:
        """The provider's headers the agent may see (never one holding the credential)."""
        credential = self.state.store.current.provider_credential
        return {
            k: v
            for k, v in upstream.headers.items()
            if k.lower().startswith(PASS_RESPONSE_PREFIXES) and not (credential and credential in v)
        }

    async def answer(
        self,
        route: Route,
        upstream: aiohttp.ClientResponse,
        engine: PolicyEngine,
        call: CallInfo | None,
    ) -> web.Response:
        """A whole answer, of any status: check it, count its tokens, return it.

        ``call`` is None for a model listing (no tokens to count).
        """
        limits = self.state.store.config.limits
        try:
            raw, reservation = await read_bounded(
                upstream.content.iter_chunked(READ_CHUNK),
                upstream.content_length,
                ("maxResponseBytes", limits.max_response_bytes),
                self.state.buffers,
                "the provider's answer",
            )
        except LimitExceeded as error:
            self.outcome(route, "upstream_error")
            return plain_error(502, "upstream_error", "answer_too_large", error.message)
        started = time.perf_counter()
        try:
            return await self._checked(route, upstream, engine, call, raw)
        finally:
            _spent(call.meter if call is not None else None, started)
            await reservation.release()

    async def _checked(
        self,
        route: Route,
        upstream: aiohttp.ClientResponse,
        engine: PolicyEngine,
        call: CallInfo | None,
        raw: bytes | bytearray,
    ) -> web.Response:
        limits = self.state.store.config.limits
        try:
            check_json_shape(raw, limits.max_json_depth, limits.max_response_bytes)
            answer: Any = json.loads(raw)
        except LimitExceeded as error:
            return plain_error(502, "upstream_error", "answer_too_deep", error.message)
        except ValueError:
            answer = None  # not JSON: inspected as one text
        if call is not None and call.meter is not None:  # what the provider charged
            usage = answer.get("usage") if isinstance(answer, dict) else None
            call.meter.usage, call.meter.output_bytes = split_usage(usage), len(raw)
        body: bytes | bytearray = raw
        if engine.inspects_responses:
            text = raw.decode("utf-8", errors="replace") if answer is None else None
            value = answer if text is None else text
            if len(raw) > INLINE_INSPECTION_BYTES:  # off the event loop, one at a time
                verdict = await self.state.inspect_aside(engine.inspect_payload, value, "response")
            else:
                verdict = engine.inspect_payload(value, "response")
            await self.state.report(verdict.findings, call.extra if call else None)
            if verdict.blocked is not None:
                self.outcome(route, "blocked")
                return policy_error(verdict.blocked, 403)
            if verdict.findings:
                redacted = verdict.payload
                body = (redacted if text is not None else json.dumps(redacted)).encode()
        if call is not None and 200 <= upstream.status < 300 and isinstance(answer, dict):
            self.count_tokens(call, answer, usage_tokens(answer.get("usage")))
        self.outcome(route, "forwarded" if upstream.status < 400 else "upstream_error")
        return web.Response(
            body=body, status=upstream.status, headers=self.response_headers(upstream)
        )

    async def stream(
        self,
        request: web.Request,
        route: Route,
        upstream: aiohttp.ClientResponse,
        engine: PolicyEngine,
        call: CallInfo,
    ) -> web.StreamResponse:
        """Relay an SSE stream chunk by chunk, checking every string as it passes."""
        response = web.StreamResponse(
            status=upstream.status, headers=self.response_headers(upstream)
        )
        response.headers["Cache-Control"] = "no-cache"
        await response.prepare(request)
        max_event = self.state.store.config.limits.max_response_bytes
        rewriter = SseRewriter(engine, max_event=max_event) if engine.inspects_responses else None
        meter = call.meter
        seen = StreamUsage(count_text=self.state.budgets.active) if meter is not None else None
        outcome = "forwarded"
        async for chunk in upstream.content.iter_any():
            started = time.perf_counter()
            if seen is not None:
                seen.feed(chunk)
            if rewriter is None:
                _spent(meter, started)
                await response.write(chunk)
                continue
            result = rewriter.feed(chunk)
            _spent(meter, started)
            await self.state.report(result.findings, call.extra)
            if result.data:
                await response.write(result.data)
            if result.blocked is not None:
                outcome = "blocked"
                break
            if result.oversized:
                outcome = "upstream_error"
                await response.write(_event_too_large(max_event))
                break
        else:
            if rewriter is not None:
                result = rewriter.close()
                await self.state.report(result.findings, call.extra)
                await response.write(result.data)
        if rewriter is None:
            self.count_tokens(call, None, None)
        else:
            self.count_tokens(call, None, rewriter.usage_tokens, rewriter.released_chars)
        if meter is not None and seen is not None:
            meter.usage, meter.output_bytes = seen.usage, seen.text_bytes
        self.outcome(route, outcome)
        await response.write_eof()
        return response

    def count_tokens(
        self, call: CallInfo, answer: Any, reported: int | None, streamed_chars: int = 0
    ) -> None:
        """Count a call's tokens: the upstream's ``usage``, else characters / 4."""
        tokens = reported
        if tokens is None:
            answer_chars = sum(len(text) for text in string_values(answer))
            tokens = estimate_tokens(call.request_chars + answer_chars) + streamed_chars // 4
        self.state.limiter.record_tokens(self.state.clock(), tokens)
        self.state.metrics.tokens.inc(tokens)

    def outcome(self, route: Route, outcome: str) -> None:
        """Count a call's outcome."""
        self.state.metrics.requests.labels(endpoint=route.path, outcome=outcome).inc()


def _spent(meter: CallMeter | None, started: float) -> None:
    """Count the time since ``started`` as spent governing the call."""
    if meter is not None:
        meter.governance += time.perf_counter() - started


def _event_too_large(limit: int) -> bytes:
    error = {
        "type": "upstream_error",
        "code": "event_too_large",
        "message": f"a streamed event from the provider exceeds maxResponseBytes ({limit} bytes)",
    }
    return (
        b"event: error\ndata: " + json.dumps({"type": "error", "error": error}).encode() + b"\n\n"
    )
