"""Escape 4: content the policy never sees.

In enforce mode every string the agent sends to the model and every string the
model sends back must be inspected, wherever it sits in the JSON and however a
stream splits it: a blocked pattern blocks, PII is redacted. These tests go
through the running sidecar (HTTP) for each field the issue names; the property
tests in ``test_sidecar_content_properties.py`` cover the classes.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from content_oracle import EMAIL, POLICY, contains_email, sse_events, unescaped
from sidecar_fakes import SidecarFactory, Upstream

from promethios.sidecar.app import Sidecar

PATTERN = "Project Nightingale"
USER = [{"role": "user", "content": "hello"}]


async def post(sidecar: Sidecar, path: str, body: Any) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{sidecar.agent_port}{path}"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, await response.read()


def tool(description: str = "a tool", parameters: Any = None) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": description,
            "parameters": parameters or {"type": "object", "properties": {}},
        },
    }


def assistant_call(arguments: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


OPENAI_REQUESTS = {
    "tools.function.description": {"messages": USER, "tools": [tool(f"about {PATTERN}")]},
    "tools.function.parameters": {
        "messages": USER,
        "tools": [tool(parameters={"type": "object", "properties": {"q": {"enum": [PATTERN]}}})],
    },
    "response_format.json_schema": {
        "messages": USER,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "s", "schema": {"description": f"say {PATTERN}"}},
        },
    },
    "a key, not a value": {"messages": USER, "metadata": {PATTERN: "1"}},
    "an unknown field, nested": {"messages": USER, "future": {"a": [[{"b": PATTERN}]]}},
    "tool_calls arguments, \\u-escaped": {
        "messages": [assistant_call('{"q": "Project\\u0020Nightingale"}')]
    },
    'tool_calls arguments, \\" escaped': {
        "messages": [assistant_call(json.dumps({"q": 'launch "codes"'}))]
    },
}
ANTHROPIC_REQUESTS = {
    "tool_use.input": {
        "max_tokens": 5,
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"q": PATTERN}}],
            }
        ],
    },
    "tools.input_schema": {
        "max_tokens": 5,
        "messages": USER,
        "tools": [{"name": "f", "input_schema": {"type": "object", "description": PATTERN}}],
    },
    "tool_result content": {
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": PATTERN}],
                    }
                ],
            }
        ],
    },
}


@pytest.mark.parametrize("where", list(OPENAI_REQUESTS))
async def test_openai_request_field_blocks(
    make_sidecar: SidecarFactory, upstream: Upstream, where: str
) -> None:
    sidecar = await make_sidecar(**POLICY)
    status, body = await post(
        sidecar, "/v1/chat/completions", {"model": "m", **OPENAI_REQUESTS[where]}
    )
    assert status == 403, body
    assert json.loads(body)["error"]["type"] == "policy_violation"
    assert upstream.requests == []


@pytest.mark.parametrize("where", list(ANTHROPIC_REQUESTS))
async def test_anthropic_request_field_blocks(
    make_sidecar: SidecarFactory, upstream: Upstream, where: str
) -> None:
    sidecar = await make_sidecar(provider={"type": "anthropic"}, **POLICY)
    status, body = await post(sidecar, "/v1/messages", {"model": "m", **ANTHROPIC_REQUESTS[where]})
    assert status == 403, body
    assert upstream.requests == []


async def test_pii_in_tool_description_and_escaped_arguments_is_redacted(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(**POLICY)
    escaped = '{"to": "jane\\u0040example.com", "cc": "bob@example.org"}'
    request = {
        "model": "m",
        "messages": [assistant_call(escaped)],
        "tools": [tool(f"mail {EMAIL}")],
    }
    status, _ = await post(sidecar, "/v1/chat/completions", request)
    assert status == 200
    _, _, forwarded = upstream.requests[-1]
    assert not contains_email(forwarded)
    arguments = json.loads(forwarded["messages"][0]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"to": "[REDACTED:email]", "cc": "[REDACTED:email]"}


# -- answers, whole ---------------------------------------------------------------------


def openai_answer(message: dict[str, Any]) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}


def anthropic_answer(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": list(blocks)}


ANSWERS = {
    "openai tool_calls arguments": (
        "openai",
        openai_answer(assistant_call('{"q": "project\\u0020nightingale"}')),
    ),
    "openai refusal": ("openai", openai_answer({"role": "assistant", "refusal": PATTERN})),
    "anthropic tool_use.input": (
        "anthropic",
        anthropic_answer({"type": "tool_use", "id": "t", "name": "f", "input": {"q": PATTERN}}),
    ),
    "anthropic thinking": (
        "anthropic",
        anthropic_answer({"type": "thinking", "thinking": PATTERN, "signature": "s"}),
    ),
}


@pytest.mark.parametrize("where", list(ANSWERS))
async def test_answer_field_blocks(
    make_sidecar: SidecarFactory, upstream: Upstream, where: str
) -> None:
    provider, answer = ANSWERS[where]
    sidecar = await make_sidecar(provider={"type": provider}, **POLICY)
    upstream.answer = answer
    path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
    status, body = await post(sidecar, path, {"model": "m", "max_tokens": 5, "messages": USER})
    assert status == 403, body
    assert "project" not in body.decode().lower()  # the rule is named, the text is not


async def test_pii_in_anthropic_tool_use_answer_is_redacted(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(provider={"type": "anthropic"}, **POLICY)
    upstream.answer = anthropic_answer(
        {"type": "tool_use", "id": "t", "name": "send", "input": {"to": [EMAIL]}}
    )
    status, body = await post(
        sidecar, "/v1/messages", {"model": "m", "max_tokens": 5, "messages": USER}
    )
    assert status == 200
    answer = json.loads(body)
    assert answer["content"][0]["input"] == {"to": ["[REDACTED:email]"]}


# -- answers, streamed -------------------------------------------------------------------


def openai_delta(delta: dict[str, Any]) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def tool_args(piece: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}


def anthropic_delta(delta: dict[str, Any]) -> bytes:
    event = {"type": "content_block_delta", "index": 0, "delta": delta}
    return b"event: content_block_delta\ndata: " + json.dumps(event).encode() + b"\n\n"


OPENAI_DONE = [
    b'data: {"object": "chat.completion.chunk", "choices": '
    b'[{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
    b"data: [DONE]\n\n",
]
ANTHROPIC_DONE = [
    b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}\n\n',
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
]
STREAMS = {
    "openai delta.tool_calls[].function.arguments": (
        "openai",
        [openai_delta(tool_args(p)) for p in ['{"q": "proj', "ect night", 'ingale"}']],
        ("choices", 0, "delta", "tool_calls", 0, "function", "arguments"),
    ),
    "openai delta.refusal": (
        "openai",
        [openai_delta({"refusal": p}) for p in ["I won't discuss Proj", "ect Nightingale."]],
        ("choices", 0, "delta", "refusal"),
    ),
    "openai delta.reasoning_content": (
        "openai",
        [openai_delta({"reasoning_content": p}) for p in ["think: project nigh", "tingale"]],
        ("choices", 0, "delta", "reasoning_content"),
    ),
    "anthropic input_json_delta.partial_json": (
        "anthropic",
        [
            anthropic_delta({"type": "input_json_delta", "partial_json": p})
            for p in ['{"q": "Project', "\\u0020Night", 'ingale"}']
        ],
        ("delta", "partial_json"),
    ),
    "anthropic thinking_delta": (
        "anthropic",
        [
            anthropic_delta({"type": "thinking_delta", "thinking": p})
            for p in ["about proje", "ct nightingale"]
        ],
        ("delta", "thinking"),
    ),
}


@pytest.mark.parametrize("where", list(STREAMS))
async def test_streamed_field_blocks(
    make_sidecar: SidecarFactory, upstream: Upstream, where: str
) -> None:
    provider, pieces, path = STREAMS[where]
    sidecar = await make_sidecar(provider={"type": provider}, **POLICY)
    upstream.sse = pieces + (ANTHROPIC_DONE if provider == "anthropic" else OPENAI_DONE)
    endpoint = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
    request = {"model": "m", "max_tokens": 5, "messages": USER, "stream": True}
    status, raw = await post(sidecar, endpoint, request)
    assert status == 200
    assert b"event: error" in raw and b"blocked_pattern.nightingale" in raw
    released = "".join(str(value) for value in sse_events(raw, path))
    assert "nightingale" not in unescaped(released).lower()


async def test_streamed_escaped_email_in_tool_arguments_is_redacted(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    sidecar = await make_sidecar(**POLICY)
    pieces = ['{"to": "jane', "\\u00", '40example.com", "n": 1}']
    upstream.sse = [openai_delta(tool_args(p)) for p in pieces] + OPENAI_DONE
    request = {"model": "m", "messages": USER, "stream": True}
    status, raw = await post(sidecar, "/v1/chat/completions", request)
    assert status == 200 and b"event: error" not in raw
    path = ("choices", 0, "delta", "tool_calls", 0, "function", "arguments")
    arguments = "".join(str(value) for value in sse_events(raw, path))
    assert json.loads(arguments) == {"to": "[REDACTED:email]", "n": 1}


async def test_logprobs_refused_while_completions_are_inspected(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    """Log probabilities spell the completion out token by token, past any redaction."""
    sidecar = await make_sidecar(**POLICY)
    status, body = await post(
        sidecar, "/v1/chat/completions", {"model": "m", "messages": USER, "logprobs": True}
    )
    assert status == 400 and json.loads(body)["error"]["code"] == "logprobs_not_inspectable"
    assert upstream.requests == []
    audit = await make_sidecar(mode="audit", **POLICY)
    request = {"model": "m", "messages": USER, "top_logprobs": 2}
    assert (await post(audit, "/v1/chat/completions", request))[0] == 200
