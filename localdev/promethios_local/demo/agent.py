"""The sample agent ``make run`` drives: a tiny program that talks to its sidecar only.

It knows nothing of keys or credentials. Its environment gives it the sidecar's
model-proxy base URL (``OPENAI_BASE_URL``), exactly as the operator's Deployment
does in a real pod. One of its prompts leaks PII, so the demo shows a violation
flowing through the sidecar and the ingest API into the GovernedAgent's status.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

PROMPTS: tuple[str, ...] = (
    "Summarise the quarterly governance report in one sentence.",
    "Draft a friendly reply to a customer asking about delivery times.",
    "Email the refund to jane.doe@example.com and note SSN 123-45-6789 on file.",
    "List three risks of deploying language models without oversight.",
)


@dataclass(frozen=True)
class CallResult:
    """What one model call through the sidecar returned."""

    prompt: str
    status: int
    reply: str


async def call_model(
    session: aiohttp.ClientSession, base_url: str, prompt: str, model: str = "gpt-4o-mini"
) -> CallResult:
    """One OpenAI-style chat completion through the sidecar's proxy."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    async with session.post(f"{base_url}/chat/completions", json=body) as response:
        payload = await response.json(content_type=None)
        if response.status == 200:
            reply = str(payload["choices"][0]["message"]["content"])
        else:
            reply = str(payload.get("error", {}).get("message", payload))
        return CallResult(prompt=prompt, status=response.status, reply=reply)


async def run_agent(base_url: str, rounds: int = 1, pause: float = 0.5) -> list[CallResult]:
    """Send every prompt ``rounds`` times, pausing between calls like a real agent."""
    results: list[CallResult] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(rounds):
            for prompt in PROMPTS:
                results.append(await call_model(session, base_url, prompt))
                await asyncio.sleep(pause)
    return results
