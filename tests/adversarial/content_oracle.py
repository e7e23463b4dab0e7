"""What the content tests check against, written independently of the sidecar's code.

The oracle reads what the agent (or the model) would read: every string, keys
included, with JSON escapes undone as often as they were applied, and streamed
fields concatenated in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

EMAIL = "jane.doe@example.com"
#: Two blocked patterns (one with quotes, to be split by ``\\"``) and PII redaction.
POLICY: dict[str, Any] = {
    "policy": {
        "blockedPatterns": [
            {"name": "nightingale", "pattern": r"project\s+nightingale"},
            {"name": "codes", "pattern": 'launch "codes"'},
        ],
        "piiDetection": {"action": "redact"},
    }
}
ANY_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def unescaped(text: str, rounds: int = 4) -> str:
    """``text`` with JSON string escapes undone, up to ``rounds`` times over."""
    for _ in range(rounds):
        decoded = _ESCAPE.sub(_unescape_one, text)
        if decoded == text:
            break
        text = decoded
    return text


def _unescape_one(match: re.Match[str]) -> str:
    body = match.group(1)
    if body.startswith("u") and len(body) == 5:
        return chr(int(body[1:], 16))
    return _SIMPLE.get(body, body)


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value: keys and values, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def contains_email(value: Any) -> bool:
    """True if any string in ``value``, unescaped, holds an e-mail address."""
    return any(ANY_EMAIL.search(unescaped(text)) for text in strings(value))


def sse_payloads(raw: bytes) -> Iterator[dict[str, Any]]:
    """The JSON ``data`` of each event of an SSE stream, in order."""
    for block in raw.decode("utf-8", errors="replace").split("\n\n"):
        data = "\n".join(
            line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")
        )
        if not data or data == "[DONE]":
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            continue
        if isinstance(payload, dict):
            yield payload


def sse_events(raw: bytes, path: tuple[str | int, ...]) -> Iterator[Any]:
    """The value at ``path`` in every event that has one (what a client concatenates)."""
    missing = object()
    for payload in sse_payloads(raw):
        value: Any = payload
        for step in path:
            value = _step(value, step, missing)
        if value is not missing:
            yield value


def _step(value: Any, step: str | int, missing: object) -> Any:
    if isinstance(step, int) and isinstance(value, list) and len(value) > step:
        return value[step]
    if isinstance(step, str) and isinstance(value, dict):
        return value.get(step, missing)
    return missing
