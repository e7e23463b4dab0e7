"""What one model call costs: its worst case before, what it used after (pure).

- :func:`output_bounds`: the output a request allows itself (see :mod:`.budget`);
- :func:`split_usage`: input and output tokens from an OpenAI or Anthropic ``usage``;
- :class:`StreamUsage`: the same from a streamed answer, plus the bytes of text it carried;
- :class:`CallMeter`: one call's record (provider status, usage, time spent governing it),
  read by the budget settlement and the GenAI metrics.

When the provider reports no usage, a call is charged its upper bound: the request's bytes
in, the answer's text bytes out (a token is at least one byte), never an estimate below.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

#: ``max_tokens`` and its spellings, by API.
OUTPUT_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_CHOICES = 128
#: Operation names of the GenAI semantic conventions, by proxied route.
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def output_bounds(body: Any) -> tuple[int | None, int]:
    """A request's stated output cap per choice (None: unstated) and its number of choices."""
    if not isinstance(body, dict):
        return None, 1
    cap = next((c for key in OUTPUT_CAPS if (c := _positive(body.get(key))) is not None), None)
    choices = max(_positive(body.get("n")) or 1, _positive(body.get("best_of")) or 1)
    return cap, min(choices, MAX_CHOICES)


def _int(usage: dict[str, Any], *keys: str) -> int | None:
    values = [v for k in keys if isinstance(v := usage.get(k), int) and not isinstance(v, bool)]
    return sum(values) if values else None


def split_usage(usage: Any) -> tuple[int, int] | None:
    """(input, output) tokens of an OpenAI or Anthropic ``usage``; None if it has none.

    Anthropic's cache reads and writes count as input; a bare ``total_tokens`` counts as
    output (the dearer side, when priced).
    """
    if not isinstance(usage, dict):
        return None
    inputs = _int(usage, "prompt_tokens") or _int(
        usage, "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"
    )
    outputs = _int(usage, "completion_tokens", "output_tokens")
    if inputs is None and outputs is None:
        total = _int(usage, "total_tokens")
        return (0, total) if total is not None else None
    return (inputs or 0, outputs or 0)


def _text_bytes(node: Any) -> int:
    if isinstance(node, str):
        return len(node.encode("utf-8", "surrogatepass"))
    if isinstance(node, dict):
        return sum(_text_bytes(v) for v in node.values())
    if isinstance(node, list):
        return sum(_text_bytes(v) for v in node)
    return 0


class StreamUsage:
    """Reads a streamed answer's events for ``usage`` (the largest figure of each kind seen:
    Anthropic repeats a growing ``output_tokens``) and, if ``count_text``, the bytes of the
    streamed text (``choices[].delta``, ``choices[].text``, Anthropic's ``delta``)."""

    def __init__(self, count_text: bool) -> None:
        self.count_text = count_text
        self.usage: tuple[int, int] | None = None
        self.text_bytes = 0
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream."""
        self._buffer += chunk
        if b"\n\n" not in self._buffer and b"\r\n\r\n" not in self._buffer:
            return
        blocks = self._buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        self._buffer = blocks.pop()
        for block in blocks:
            self._event(block)

    def _event(self, block: bytes) -> None:
        if not self.count_text and b'"usage"' not in block:
            return
        data = b"\n".join(
            line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")
        )
        try:
            payload = json.loads(data) if data else None
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        message = payload.get("message")
        usage = payload.get("usage") or (
            message.get("usage") if isinstance(message, dict) else None
        )
        found = split_usage(usage)
        if found is not None:
            before = self.usage or (0, 0)
            self.usage = (max(before[0], found[0]), max(before[1], found[1]))
        if self.count_text:
            choices = payload.get("choices")
            for choice in choices if isinstance(choices, list) else []:
                if isinstance(choice, dict):
                    self.text_bytes += _text_bytes(choice.get("delta")) + _text_bytes(
                        choice.get("text")
                    )
            if payload.get("type") == "content_block_delta":
                self.text_bytes += _text_bytes(payload.get("delta"))


@dataclass
class CallMeter:
    """One model call, as the budgets and the GenAI metrics need it."""

    operation: str
    model: str | None = None
    status: int | None = None
    """The provider's HTTP status; None: the provider was not reached."""
    usage: tuple[int, int] | None = None
    """(input, output) tokens as the provider reported them."""
    output_bytes: int = 0
    """Bytes of the answer (or of its streamed text): the output bound without a usage."""
    governance: float = 0.0
    """Seconds spent governing the call (checks, inspection, budgets), not waiting."""
    started: float = field(default_factory=time.perf_counter)

    def charge(self, input_bound: int) -> tuple[int, int]:
        """(input, output) tokens to charge: the provider's figures, else the upper bound;
        an error answer without figures costs no tokens (providers do not bill it)."""
        if self.usage is not None:
            return self.usage
        if self.status is None or self.status >= 400:
            return (0, 0)
        return (input_bound, self.output_bytes)
