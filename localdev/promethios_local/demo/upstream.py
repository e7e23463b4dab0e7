"""A local stand-in for a model provider, used by ``make run`` and benchmarks.

It speaks enough of the OpenAI and Anthropic HTTP APIs for the sidecar's proxy:
chat completions (plain and SSE streaming), completions, embeddings, models and
Anthropic messages. Replies are deterministic: the assistant echoes the last user
message, so a prompt that contains PII produces a completion that contains it too.
It records the credential headers it received so a demo can show that only the
sidecar ever held the provider key.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "text-embedding-3-small")


@dataclass
class UpstreamLog:
    """What the fake provider saw: one entry per request."""

    credentials: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


UPSTREAM_LOG = web.AppKey("upstream_log", UpstreamLog)


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):
                return " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
            return str(content)
    return str(body.get("prompt", ""))


def _usage(prompt: str, completion: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(completion) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming OpenAI chat completion echoing the last user message."""
    prompt = _last_user_text(body)
    reply = f"You said: {prompt}"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", MODELS[0]),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(prompt, reply),
    }


def anthropic_message(body: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming Anthropic message echoing the last user message."""
    prompt = _last_user_text(body)
    reply = f"You said: {prompt}"
    usage = _usage(prompt, reply)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-3-5-haiku"),
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
        },
    }


def build_upstream_app(log: UpstreamLog | None = None, chunk_delay: float = 0.0) -> web.Application:
    """The fake provider as an aiohttp application."""
    seen = log or UpstreamLog()

    def record(request: web.Request) -> None:
        seen.paths.append(request.path)
        seen.credentials.append(
            request.headers.get("Authorization", "") or request.headers.get("x-api-key", "")
        )

    async def chat(request: web.Request) -> web.StreamResponse:
        record(request)
        body = await request.json()
        completion = chat_completion(body)
        if not body.get("stream"):
            return web.json_response(completion)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        text = completion["choices"][0]["message"]["content"]
        for word in text.split(" "):
            delta = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
            await response.write(f"data: {json.dumps(delta)}\n\n".encode())
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def completions(request: web.Request) -> web.Response:
        record(request)
        body = await request.json()
        prompt = str(body.get("prompt", ""))
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "choices": [{"index": 0, "text": f"You said: {prompt}", "finish_reason": "stop"}],
                "usage": _usage(prompt, prompt),
            }
        )

    async def embeddings(request: web.Request) -> web.Response:
        record(request)
        body = await request.json()
        text = str(body.get("input", ""))
        vector = [((ord(c) % 17) - 8) / 8 for c in text[:8].ljust(8)]
        return web.json_response(
            {
                "object": "list",
                "data": [{"index": 0, "embedding": vector}],
                "usage": _usage(text, ""),
            }
        )

    async def models(request: web.Request) -> web.Response:
        record(request)
        return web.json_response({"object": "list", "data": [{"id": m} for m in MODELS]})

    async def messages(request: web.Request) -> web.Response:
        record(request)
        return web.json_response(anthropic_message(await request.json()))

    app = web.Application()
    app[UPSTREAM_LOG] = seen
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/messages", messages)
    return app
