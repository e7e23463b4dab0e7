"""Policy checks on streamed completions (server-sent events), applied as they stream.

Pure: bytes from the upstream go in, bytes for the agent come out, plus the
findings. Every string of every event is inspected, whatever the event's shape:

- streamed fields, i.e. every string under OpenAI's ``choices[].delta``
  (``content``, ``refusal``, ``tool_calls[].function.arguments``, any other) or
  Anthropic's ``content_block_delta.delta`` (``text``, ``partial_json``,
  ``thinking``, any other), and the legacy ``choices[].text``, are concatenated
  per field by a :class:`~.scanner.StreamScanner` each, which holds back a short
  tail so a match split across events is still caught. Identifiers there
  (``type``, ``id``, ``name``, ``role``) arrive whole and are inspected whole;
- every other string (ids, model names, a tool's ``input`` in
  ``content_block_start``, keys, ``data`` that is not JSON) is inspected whole.

Held text is released in later events; when its choice finishes or its block
stops, it is appended to the event's own field or sent just before it as a
synthetic event carrying only that field; all of it before ``[DONE]``,
``message_stop`` or the end of the stream. When a blocking finding appears
(enforce mode), the stream ends with an SSE ``error`` event naming the rule.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from .policy import MAX_FINDINGS_PER_CALL, Finding, PolicyEngine
from .scanner import StreamScanner

DONE = "[DONE]"
#: Strings under ``delta`` that arrive whole in one event (not concatenated).
WHOLE_IN_DELTA = frozenset({"type", "id", "name", "role"})
#: What a synthetic event keeps of the event it stands for: identifiers only.
SKELETON_TOP = frozenset({"id", "object", "created", "model", "type", "index"})
SKELETON_NESTED = frozenset({"index", "type"})
WHOLE_CACHE_SIZE = 1024

Step = str | int
FieldKey = tuple[Any, ...]


@dataclass
class StreamResult:
    """What one call to :meth:`SseRewriter.feed` produced."""

    data: bytes = b""
    findings: list[Finding] = field(default_factory=list)
    blocked: Finding | None = None
    oversized: bool = False  # an event exceeded ``max_event`` bytes: the stream must end


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
    def name(self) -> str | None:
        return next((v for n, v in self.fields if n == "event"), None)

    @property
    def data(self) -> str | None:
        lines = [v for n, v in self.fields if n == "data"]
        return "\n".join(lines) if lines else None

    def with_data(self, data: str) -> bytes:
        out = [f"{n}: {v}" if n else f":{v}" for n, v in self.fields if n != "data"]
        out += [f"data: {line}" for line in data.split("\n")]
        return ("\n".join(out) + "\n\n").encode()


@dataclass
class _Field:
    """One streamed field: its scanner, and how to send its held tail on its own."""

    scanner: StreamScanner
    skeleton: Any = None  # the field's last event, cut down to the field and identifiers
    leaf: tuple[Step, ...] = ()  # where the text goes in the skeleton
    event: str | None = None


@dataclass
class _Pass:
    """The state of rewriting one event."""

    result: StreamResult
    event: str | None  # the SSE event name
    kind: Any  # the payload's ``type``
    fed: dict[FieldKey, tuple[Step, ...]] = field(default_factory=dict)  # field -> its path
    rewritten: Any = None


class SseRewriter:
    """Rewrites one SSE stream, event by event, under a policy."""

    def __init__(self, engine: PolicyEngine, hold: int = 64, max_event: int | None = None) -> None:
        self.engine = engine
        self.hold = hold
        self.max_event = max_event
        self._buffer = b""
        self._fields: dict[FieldKey, _Field] = {}
        self._whole: dict[str, str] = {}
        self._released_done = 0
        self._reported = 0
        self.usage_tokens: int | None = None

    @property
    def released_chars(self) -> int:
        """Streamed characters released so far (for token estimates)."""
        return self._released_done + sum(f.scanner.released for f in self._fields.values())

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
            if self._too_large(block):
                result.oversized = True
                break
            out.append(self._event(block, result))
        self._buffer += keep
        result.oversized = result.oversized or self._too_large(self._buffer)
        result.data = b"".join(out)
        return result

    def _too_large(self, block: bytes) -> bool:
        return self.max_event is not None and len(block) > self.max_event

    def close(self) -> StreamResult:
        """End of the upstream stream: release whatever is still held."""
        result = StreamResult()
        tail = self._buffer.strip()
        self._buffer = b""
        out = [self._event(tail, result)] if tail else []
        if result.blocked is None:
            out.append(self._flush(result, ()))
            if result.blocked is not None:
                out = [error_event(result.blocked)]
        result.data = b"".join(out)
        return result

    # -- one event ---------------------------------------------------------------------

    def _event(self, block: bytes, result: StreamResult) -> bytes:
        raw = block + b"\n\n"
        event = _Event.parse(block.decode("utf-8", errors="replace"))
        data = event.data
        if data is None:
            return raw
        if data.strip() == DONE:
            flushed = self._flush(result, ())
            return error_event(result.blocked) if result.blocked else flushed + raw
        try:
            payload = json.loads(data)
        except ValueError:
            text = self._inspect_whole(data, result)  # not JSON: still text the agent reads
            if result.blocked is not None:
                return error_event(result.blocked)
            return raw if text == data else event.with_data(text)
        kind = payload.get("type") if isinstance(payload, dict) else None
        top = payload.get("index") if isinstance(payload, dict) else None
        step = _Pass(result, event.name, kind)
        if isinstance(payload, dict):
            self._usage(payload)
        step.rewritten = self._map(payload, (top if isinstance(top, int) else None,), (), step)
        if result.blocked is not None:
            return error_event(result.blocked)
        self._remember(step)
        prefix = b"".join(self._flush(result, scope, step) for scope in _scopes(payload, top))
        if result.blocked is not None:
            return error_event(result.blocked)
        if step.rewritten == payload:
            return prefix + raw
        return prefix + event.with_data(json.dumps(step.rewritten))

    def _map(self, value: Any, key: FieldKey, where: tuple[Step, ...], step: _Pass) -> Any:
        """A copy of ``value`` with every string inspected (streamed ones fed to scanners)."""
        if isinstance(value, str):
            if _streamed(where, step.kind):
                return self._feed(key, where, value, step)
            return self._inspect_whole(value, step.result)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                new_name = self._inspect_whole(name, step.result)
                out[new_name] = self._map(item, (*key, name), (*where, new_name), step)
            return out
        if isinstance(value, list):
            return [
                self._map(item, (*key, _index_of(item, i)), (*where, i), step)
                for i, item in enumerate(value)
            ]
        return value

    def _feed(self, key: FieldKey, where: tuple[Step, ...], text: str, step: _Pass) -> str:
        entry = self._fields.get(key)
        if entry is None:
            entry = self._fields[key] = _Field(StreamScanner(self.engine, self.hold))
        verdict = entry.scanner.feed(text)
        self._collect(verdict.findings, step.result)
        step.fed[key] = where
        return verdict.text

    def _remember(self, step: _Pass) -> None:
        """For each field this event fed: the shape a synthetic event for it would take."""
        for key, where in step.fed.items():
            entry = self._fields[key]
            entry.skeleton, entry.leaf = _skeleton(step.rewritten, where)
            entry.event = step.event

    def _flush(self, result: StreamResult, scope: FieldKey, step: _Pass | None = None) -> bytes:
        """Release the held tail of every field in ``scope`` (``()`` = all).

        A tail whose field is in the current event is appended to it; any other is
        returned as a synthetic event, to be sent before the current one.
        """
        out: list[bytes] = []
        for key in [k for k in self._fields if k[: len(scope)] == scope]:
            entry = self._fields.pop(key)
            verdict = entry.scanner.flush()
            self._released_done += entry.scanner.released
            self._collect(verdict.findings, result)
            if result.blocked is not None:
                return b""
            if not verdict.text:
                continue
            where = step.fed.get(key) if step is not None else None
            if step is not None and where is not None:
                _at(step.rewritten, where[:-1])[where[-1]] += verdict.text
            else:
                out.append(_synthetic(entry, verdict.text))
        return b"".join(out)

    def _inspect_whole(self, text: str, result: StreamResult) -> str:
        """A string that arrives whole: inspected once per stream, findings reported once."""
        known = self._whole.get(text)
        if known is not None:
            return known
        verdict = self.engine.inspect_text(text, "response")
        self._collect(verdict.findings, result)
        if len(self._whole) >= WHOLE_CACHE_SIZE:
            self._whole.clear()
        self._whole[text] = verdict.text
        return verdict.text

    def _collect(self, findings: list[Finding], result: StreamResult) -> None:
        """Keep findings, at most :data:`MAX_FINDINGS_PER_CALL` per stream (plus a blocking one)."""
        if result.blocked is None:
            result.blocked = next((f for f in findings if f.blocks), None)
        room = max(0, MAX_FINDINGS_PER_CALL - self._reported)
        kept = findings[:room]
        if result.blocked is not None and result.blocked not in kept:
            kept.append(result.blocked)
        self._reported += len(kept)
        result.findings.extend(kept)

    def _usage(self, payload: dict[str, Any]) -> None:
        """Token usage the upstream reports in the stream (OpenAI final chunk, Anthropic)."""
        usage = payload.get("usage")
        message = payload.get("message")
        if usage is None and isinstance(message, dict):
            usage = message.get("usage")
        tokens = usage_tokens(usage)
        if tokens is not None:
            self.usage_tokens = (self.usage_tokens or 0) + tokens


def _streamed(where: tuple[Step, ...], kind: Any) -> bool:
    """True if the string at ``where`` is a piece of a text streamed across events."""
    if len(where) == 3 and where[0] == "choices" and where[2] == "text":
        return True  # legacy completions
    if len(where) >= 4 and where[0] == "choices" and where[2] == "delta":
        inside = where[3:]
    elif kind == "content_block_delta" and len(where) >= 2 and where[0] == "delta":
        inside = where[1:]
    else:
        return False
    name = next((s for s in reversed(inside) if isinstance(s, str)), None)
    return name not in WHOLE_IN_DELTA


def _index_of(item: Any, position: int) -> int:
    """A list element's identity: its ``index`` field if it has one, else its position."""
    index = item.get("index") if isinstance(item, dict) else None
    return index if isinstance(index, int) else position


def _scopes(payload: Any, top: Any) -> list[FieldKey]:
    """The fields this event ends: a finished choice, a stopped block, the message."""
    if not isinstance(payload, dict):
        return []
    head = top if isinstance(top, int) else None
    scopes: list[FieldKey] = []
    choices = payload.get("choices")
    for position, choice in enumerate(choices if isinstance(choices, list) else []):
        if isinstance(choice, dict) and choice.get("finish_reason"):
            scopes.append((head, "choices", _index_of(choice, position)))
    kind = payload.get("type")
    if kind == "content_block_stop":
        scopes.append((head,))
    elif kind == "message_stop":
        scopes.append(())
    return scopes


def _at(payload: Any, where: tuple[Step, ...]) -> Any:
    node = payload
    for step in where:
        node = node[step]
    return node


def _skeleton(payload: Any, where: tuple[Step, ...]) -> tuple[Any, tuple[Step, ...]]:
    """``payload`` cut down to the path ``where`` plus identifiers; the leaf's new path."""
    leaf: list[Step] = []

    def cut(node: Any, steps: tuple[Step, ...], keep: frozenset[str]) -> Any:
        if not steps:
            return ""
        head, rest = steps[0], steps[1:]
        if isinstance(node, list):
            leaf.append(0)
            return [cut(node[int(head)], rest, SKELETON_NESTED)]
        kept = {k: v for k, v in node.items() if k in keep and isinstance(v, str | int | float)}
        leaf.append(head)
        kept[str(head)] = cut(node[head], rest, SKELETON_NESTED)
        return kept

    return cut(payload, where, SKELETON_TOP), tuple(leaf)


def _synthetic(entry: _Field, text: str) -> bytes:
    """An event carrying only ``text`` for one field, shaped like the field's last event."""
    event = copy.deepcopy(entry.skeleton)
    _at(event, entry.leaf[:-1])[entry.leaf[-1]] = text
    head = f"event: {entry.event}\n" if entry.event else ""
    return (head + "data: " + json.dumps(event) + "\n\n").encode()


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
