"""Escape 4, as properties over classes: no string escapes inspection in enforce mode.

- Any string anywhere in a request or response body (a value or a key, nested at
  any depth under any keys, plain or JSON-encoded with escapes) carrying a
  blocked pattern blocks the call; carrying an e-mail address, it is redacted.
- The same for streamed answers: the secret in any streamed field (known or not),
  split into any deltas, the stream's bytes split into any chunks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from content_oracle import EMAIL, POLICY, contains_email, sse_events, unescaped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sidecar_fakes import SidecarFactory, Upstream

from promethios.api.policy import GovernancePolicySpec
from promethios.sidecar.app import Sidecar
from promethios.sidecar.policy import PolicyEngine
from promethios.sidecar.sse import SseRewriter

SECRETS = ["Project Nightingale", 'launch "codes"']
ENGINE = PolicyEngine(GovernancePolicySpec.model_validate(POLICY["policy"]), "enforce")

KEYS = st.text(max_size=8)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=10,
)


def escape_some(draw: st.DrawFn, text: str) -> str:
    """``text`` as the inside of a JSON string, some characters written as ``\\uXXXX``."""
    out = []
    for char in text:
        if char in '"\\' or draw(st.booleans()):
            out.append(f"\\u{ord(char):04x}" if draw(st.booleans()) else json.dumps(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


@st.composite
def carriers(draw: st.DrawFn, secret: str) -> str:
    """A string carrying ``secret``: plain, or JSON-encoded text (once or twice) with escapes."""
    text = f"{draw(st.text(max_size=12))} {secret} {draw(st.text(max_size=12))}"
    encoding = draw(st.sampled_from(["plain", "json", "json-escaped", "json-twice"]))
    if encoding == "plain":
        return text
    key = json.dumps(draw(KEYS))
    if encoding == "json":
        return "{" + key + ": " + json.dumps(text) + "}"
    escaped = "{" + key + ': "' + escape_some(draw, text) + '"}'
    return escaped if encoding == "json-escaped" else json.dumps(escaped)


@st.composite
def placed(draw: st.DrawFn, carrier: str) -> dict[str, Any]:
    """A JSON object with ``carrier`` somewhere: a value or a key, at any depth."""
    inner: Any = {carrier: draw(JSON)} if draw(st.booleans()) else carrier
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            siblings = draw(st.dictionaries(KEYS, JSON, max_size=2))
            siblings[draw(KEYS)] = inner
            inner = siblings
        else:
            items = draw(st.lists(JSON, max_size=2))
            items.insert(draw(st.integers(0, len(items))), inner)
            inner = items
    top = draw(st.dictionaries(KEYS, JSON, max_size=3))
    top[draw(KEYS)] = inner
    return top


def bodies(secrets: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(secrets).flatmap(carriers).flatmap(placed)


@settings(max_examples=400, deadline=None)
@given(body=bodies(SECRETS), side=st.sampled_from(["request", "response"]))
def test_blocked_pattern_anywhere_in_a_body_blocks(body: dict[str, Any], side: Any) -> None:
    verdict = ENGINE.inspect_payload(body, side)
    assert verdict.blocked is not None, body


@settings(max_examples=400, deadline=None)
@given(body=bodies([EMAIL]), side=st.sampled_from(["request", "response"]))
def test_email_anywhere_in_a_body_is_redacted(body: dict[str, Any], side: Any) -> None:
    verdict = ENGINE.inspect_payload(body, side)
    assert verdict.blocked is None
    assert not contains_email(verdict.payload), verdict.payload


# -- streams ---------------------------------------------------------------------------

OPENAI_FIELDS = ["content", "refusal", "reasoning_content", "tool_calls"]
ANTHROPIC_FIELDS = [("text_delta", "text"), ("input_json_delta", "partial_json")]
ANTHROPIC_FIELDS += [("thinking_delta", "thinking")]


@st.composite
def streams(draw: st.DrawFn, secret: str) -> tuple[list[bytes], tuple[str | int, ...]]:
    """An SSE answer carrying ``secret`` in one streamed field, and that field's path."""
    text = f"{draw(st.text(max_size=20))} {secret} {draw(st.text(max_size=20))}"
    if draw(st.booleans()):
        text = escape_some(draw, text)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    if draw(st.booleans()):
        events, path = _openai(draw, pieces)
    else:
        events, path = _anthropic(draw, pieces)
    raw = b"".join(events)
    splits = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    chunks = [raw[a:b] for a, b in zip([0, *splits], [*splits, len(raw)], strict=True)]
    return chunks, path


def _openai(draw: st.DrawFn, pieces: list[str]) -> tuple[list[bytes], tuple[str | int, ...]]:
    field = draw(
        st.sampled_from([*OPENAI_FIELDS, draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True))])
    )

    def delta(piece: str) -> dict[str, Any]:
        if field == "tool_calls":
            return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        return {field: piece}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": "c1", "object": "chat.completion.chunk", "choices": [choice]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    events = [chunk(delta(p)) for p in pieces] + [chunk({}, "stop"), b"data: [DONE]\n\n"]
    tail = ("tool_calls", 0, "function", "arguments") if field == "tool_calls" else (field,)
    return events, ("choices", 0, "delta", *tail)


def _anthropic(draw: st.DrawFn, pieces: list[str]) -> tuple[list[bytes], tuple[str | int, ...]]:
    kind, field = draw(
        st.sampled_from(
            [
                *ANTHROPIC_FIELDS,
                ("other_delta", draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True))),
            ]
        )
    )
    if field == "type":
        kind, field = "text_delta", "text"

    def event(name: str, **body: Any) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **body})}\n\n".encode()

    events = [event("message_start", message={"id": "m", "content": []})]
    events += [event("content_block_start", index=0, content_block={"type": "text", "text": ""})]
    events += [
        event("content_block_delta", index=0, delta={"type": kind, field: p}) for p in pieces
    ]
    events += [event("content_block_stop", index=0), event("message_stop")]
    return events, ("delta", field)


def rewrite(chunks: list[bytes]) -> tuple[bytes, bool]:
    """The bytes the agent gets, and whether the stream was stopped by a rule."""
    rewriter = SseRewriter(ENGINE)
    out = b""
    for chunk in chunks:
        result = rewriter.feed(chunk)
        out += result.data
        if result.blocked is not None:
            return out, True
    return out + rewriter.close().data, False


def released(out: bytes, path: tuple[str | int, ...]) -> str:
    return unescaped("".join(str(v) for v in sse_events(out, path)))


@settings(max_examples=400, deadline=None)
@given(stream=st.sampled_from(SECRETS).flatmap(streams))
def test_blocked_pattern_in_any_streamed_field_any_chunking_blocks(
    stream: tuple[list[bytes], tuple[str | int, ...]],
) -> None:
    chunks, path = stream
    out, blocked = rewrite(chunks)
    assert blocked and b"event: error" in out
    text = released(out, path).lower()
    assert "nightingale" not in text and 'launch "codes"' not in text


@settings(max_examples=400, deadline=None)
@given(stream=streams(EMAIL))
def test_email_in_any_streamed_field_any_chunking_is_redacted(
    stream: tuple[list[bytes], tuple[str | int, ...]],
) -> None:
    chunks, path = stream
    out, blocked = rewrite(chunks)
    assert not blocked
    assert "[REDACTED:email]" in released(out, path)
    assert not contains_email(released(out, path))


@settings(max_examples=300, deadline=None)
@given(secret=st.sampled_from(SECRETS), data=st.data())
def test_blocked_pattern_anywhere_in_a_stream_event_blocks(
    secret: str, data: st.DataObject
) -> None:
    """Not only the delta fields: any string of any event (ids, tool input, keys)."""
    extra = data.draw(placed(data.draw(carriers(secret))))
    event = {"type": "content_block_start", "index": 0, "content_block": extra}
    if data.draw(st.booleans()):
        event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}], **extra}
    out, blocked = rewrite([b"data: " + json.dumps(event).encode() + b"\n\n"])
    assert blocked and b"event: error" in out


# -- through the running sidecar ---------------------------------------------------------


@pytest.fixture
def enforcing(make_sidecar: SidecarFactory) -> Callable[[], Awaitable[Sidecar]]:
    cache: list[Sidecar] = []

    async def get() -> Sidecar:
        if not cache:
            cache.append(await make_sidecar(**POLICY))
        return cache[0]

    return get


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies(SECRETS))
async def test_request_carrying_a_blocked_pattern_never_reaches_upstream(
    enforcing: Callable[[], Awaitable[Sidecar]], upstream: Upstream, body: dict[str, Any]
) -> None:
    sidecar = await enforcing()
    upstream.requests.clear()
    url = f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 403
    assert upstream.requests == []
