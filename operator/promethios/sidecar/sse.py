"""Policy checks on streamed completions (server-sent events), applied as they stream.

Pure: bytes from the upstream go in, bytes for the agent come out, plus the
findings. Understands the OpenAI chunk shape (``choices[].delta.content``,
``choices[].text``) and the Anthropic event shape (``content_block_delta`` with
``delta.text``); any other event passes through untouched.

Each choice / content block has its own :class:`~.policy.StreamScanner`, which
holds back a short tail so a match split across deltas is still caught (see its
docstring for the limit). Held text is released in later deltas, at the
choice's ``finish_reason`` / the block's ``content_block_stop``, or in a
synthetic delta before ``[DONE]`` / end of stream. When a blocking finding
appears (enforce mode), the stream ends with an SSE ``error`` event naming the rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .policy import Finding, PolicyEngine, StreamScanner

DONE = "[DONE]"


@dataclass
class StreamResult:
    """What one call to :meth:`SseRewriter.feed` produced."""

    data: bytes = b""
    findings: list[Finding] = field(default_factory=list)
    blocked: Finding | None = None


def error_event(finding: Finding) -> bytes:
    """The SSE event that ends a stream a policy rule stopped."""
    payload = {"type": "error", "error": error_body(finding)}
    return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"


def error_body(finding: Finding) -> dict[str, str]:
    """The ``error`` object of every policy refusal (OpenAI style, plus ``rule``)."""
    return {
        "type": "policy_violation",
        "code": finding.code,
        "message": f"blocked by governance policy rule {finding.rule}: {finding.description}",
        "rule": finding.rule,
    }


@dataclass
class _Event:
    fields: list[tuple[str, str]]  # (name, value) in order, data lines included

    @classmethod
    def parse(cls, block: str) -> _Event:
        fields: list[tuple[str, str]] = []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields.append((name, value[1:] if value.startswith(" ") else value))
        return cls(fields)

    @property
    def data(self) -> str | None:
        lines = [v for n, v in self.fields if n == "data"]
        return "\n".join(lines) if lines else None

    def with_data(self, data: str) -> bytes:
        out = [f"{n}: {v}" if n else f":{v}" for n, v in self.fields if n != "data"]
        out.append(f"data: {data}")
        return ("\n".join(out) + "\n\n").encode()


class SseRewriter:
    """Rewrites one SSE stream, delta by delta, under a policy."""

    def __init__(self, engine: PolicyEngine, hold: int = 64) -> None:
        self.engine = engine
        self.hold = hold
        self._buffer = b""
        self._scanners: dict[tuple[str, int], StreamScanner] = {}
        self.usage_tokens: int | None = None
        self.finished = False

    @property
    def released_chars(self) -> int:
        """Completion characters released so far (for token estimates)."""
        return sum(s.released for s in self._scanners.values())

    def feed(self, chunk: bytes) -> StreamResult:
        """Process bytes from the upstream; returns what to send to the agent now."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        if self._buffer.endswith(b"\r"):  # a CRLF split across chunks
            self._buffer, keep = self._buffer[:-1], b"\r"
        else:
            keep = b""
        result = StreamResult()
        out: list[bytes] = []
        while b"\n\n" in self._buffer and result.blocked is None:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            out.append(self._event(block, result))
        self._buffer += keep
        result.data = b"".join(out)
        return result

    def close(self) -> StreamResult:
        """End of the upstream stream: release whatever is still held."""
        result = StreamResult()
        tail = self._buffer.strip()
        self._buffer = b""
        out = [self._event(tail, result)] if tail else []
        if not self.finished and result.blocked is None:
            out.append(self._flush_all(result))
        result.data = b"".join(out)
        return result

    def _event(self, block: bytes, result: StreamResult) -> bytes:
        raw = block + b"\n\n"
        event = _Event.parse(block.decode("utf-8", errors="replace"))
        data = event.data
        if data is None:
            return raw
        if data.strip() == DONE:
            self.finished = True
            return self._flush_all(result) + raw
        try:
            payload = json.loads(data)
        except ValueError:
            return raw
        if not isinstance(payload, dict):
            return raw
        self._usage(payload)
        prefix, changed = self._rewrite(payload, result)
        if result.blocked is not None:
            return prefix + error_event(result.blocked)
        if payload.get("type") == "message_stop":
            self.finished = True
        return prefix + (event.with_data(json.dumps(payload)) if changed else raw)

    def _rewrite(self, payload: dict[str, Any], result: StreamResult) -> tuple[bytes, bool]:
        """Apply the scanners to the payload in place; returns (events to send first, changed)."""
        changed = False
        for choice in payload.get("choices") or []:
            if isinstance(choice, dict):
                changed |= self._openai_choice(choice, result)
        kind = payload.get("type")
        index = payload.get("index", 0)
        if kind == "content_block_delta" and isinstance(payload.get("delta"), dict):
            delta = payload["delta"]
            if isinstance(delta.get("text"), str):
                released = self._feed(("b", index), delta["text"], result)
                changed |= released != delta["text"]
                delta["text"] = released
        if kind == "content_block_stop" and ("b", index) in self._scanners:
            rest = self._flush(("b", index), result)
            if rest:
                synthetic = {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": rest},
                }
                return b"event: content_block_delta\ndata: " + json.dumps(synthetic).encode() + (
                    b"\n\n"
                ), changed
        return b"", changed

    def _openai_choice(self, choice: dict[str, Any], result: StreamResult) -> bool:
        index = choice.get("index", 0)
        key = ("c", index if isinstance(index, int) else 0)
        delta = choice.get("delta")
        holder, slot = (delta, "content") if isinstance(delta, dict) else (choice, "text")
        original = holder.get(slot)
        text = self._feed(key, original, result) if isinstance(original, str) else original
        if choice.get("finish_reason") and key in self._scanners:
            rest = self._flush(key, result)
            if rest:
                text = (text or "") + rest
        if text != original:
            holder[slot] = text
            return True
        return False

    def _feed(self, key: tuple[str, int], text: str, result: StreamResult) -> str:
        scanner = self._scanners.get(key)
        if scanner is None:
            scanner = self._scanners[key] = self.engine.stream_scanner(self.hold)
        verdict = scanner.feed(text)
        self._collect(verdict.findings, result)
        return verdict.text

    def _flush(self, key: tuple[str, int], result: StreamResult) -> str:
        verdict = self._scanners[key].flush()
        self._collect(verdict.findings, result)
        return verdict.text

    def _flush_all(self, result: StreamResult) -> bytes:
        """Release every held tail as synthetic deltas (before ``[DONE]`` or at EOF)."""
        out = []
        for key in list(self._scanners):
            rest = self._flush(key, result)
            if not rest or result.blocked is not None:
                continue
            kind, index = key
            if kind == "c":
                chunk = {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": index, "delta": {"content": rest}}],
                }
                out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            else:
                synthetic = {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": rest},
                }
                out.append(
                    b"event: content_block_delta\ndata: " + json.dumps(synthetic).encode() + b"\n\n"
                )
        if result.blocked is not None:
            return error_event(result.blocked)
        return b"".join(out)

    def _collect(self, findings: list[Finding], result: StreamResult) -> None:
        result.findings.extend(findings)
        if result.blocked is None:
            result.blocked = next((f for f in findings if f.blocks), None)

    def _usage(self, payload: dict[str, Any]) -> None:
        """Token usage the upstream reports in the stream (OpenAI final chunk, Anthropic)."""
        usage = payload.get("usage")
        message = payload.get("message")
        if usage is None and isinstance(message, dict):
            usage = message.get("usage")
        tokens = usage_tokens(usage)
        if tokens is not None:
            self.usage_tokens = (self.usage_tokens or 0) + tokens


def usage_tokens(usage: Any) -> int | None:
    """Tokens in an OpenAI or Anthropic ``usage`` object, or None if absent."""
    if not isinstance(usage, dict):
        return None
    if isinstance(usage.get("total_tokens"), int):
        return int(usage["total_tokens"])
    parts = [
        usage.get(k)
        for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    ]
    numbers = [p for p in parts if isinstance(p, int)]
    return sum(numbers) if numbers else None
