"""Policy checks on SSE streams, OpenAI and Anthropic shapes, as bytes in / bytes out."""

from __future__ import annotations

import json
from typing import Any

from promethios.api.policy import GovernancePolicySpec
from promethios.sidecar.pii import placeholder
from promethios.sidecar.policy import PolicyEngine
from promethios.sidecar.sse import SseRewriter, usage_tokens


def engine(mode: str = "enforce", **spec: Any) -> PolicyEngine:
    return PolicyEngine(GovernancePolicySpec.model_validate(spec), mode)


def openai_chunk(text: str | None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if text is None else {"content": text}
    body = {
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def anthropic_event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


def events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line[6:] != "[DONE]":
                out.append(json.loads(line[6:]))
    return out


def openai_text(data: bytes) -> str:
    return "".join(
        c["delta"].get("content") or "" for e in events(data) for c in e.get("choices", [])
    )


def run(rewriter: SseRewriter, chunks: list[bytes]) -> tuple[bytes, list[str]]:
    out, codes = b"", []
    for chunk in chunks:
        result = rewriter.feed(chunk)
        out += result.data
        codes += [f.code for f in result.findings]
        if result.blocked:
            return out, codes
    result = rewriter.close()
    return out + result.data, codes + [f.code for f in result.findings]


def test_clean_stream_passes_through_byte_for_byte_after_release() -> None:
    chunks = [
        openai_chunk("Hello "),
        openai_chunk("world"),
        openai_chunk(None, "stop"),
        b"data: [DONE]\n\n",
    ]
    out, codes = run(SseRewriter(engine(), hold=0), chunks)
    assert out == b"".join(chunks)
    assert codes == []


def test_text_is_held_then_released_in_order() -> None:
    chunks = [
        openai_chunk("Hello "),
        openai_chunk("world"),
        openai_chunk(None, "stop"),
        b"data: [DONE]\n\n",
    ]
    out, _ = run(SseRewriter(engine(), hold=8), chunks)
    assert openai_text(out) == "Hello world"
    assert out.endswith(b"data: [DONE]\n\n")


def test_email_split_across_chunks_is_redacted() -> None:
    chunks = [
        openai_chunk("write to jane.d"),
        openai_chunk("oe@example.com"),
        openai_chunk(" soon"),
        openai_chunk(None, "stop"),
        b"data: [DONE]\n\n",
    ]
    out, codes = run(SseRewriter(engine()), chunks)
    assert openai_text(out) == f"write to {placeholder('email')} soon"
    assert b"jane" not in out
    assert codes == ["pii.email"]


def test_bytes_split_mid_event_and_crlf() -> None:
    whole = openai_chunk("mail a@b.io").replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)]
    out, codes = run(SseRewriter(engine()), pieces)
    assert openai_text(out) == f"mail {placeholder('email')}"
    assert codes == ["pii.email"]


def test_blocked_pattern_mid_stream_ends_with_error_event() -> None:
    rewriter = SseRewriter(engine(blockedPatterns=[{"name": "nuke", "pattern": "launch codes"}]))
    chunks = [
        openai_chunk("Sure, the laun"),
        openai_chunk("ch codes are 0000"),
        openai_chunk(" more"),
        b"data: [DONE]\n\n",
    ]
    out, codes = run(rewriter, chunks)
    assert codes == ["blocked_pattern.nuke"]
    assert b"launch" not in out and b"more" not in out
    last = out.decode().strip().split("\n\n")[-1]
    assert last.startswith("event: error")
    error = json.loads(last.split("data: ", 1)[1])["error"]
    assert error["type"] == "policy_violation" and error["code"] == "blocked_pattern.nuke"
    assert error["rule"] == "blockedPatterns.nuke"


def test_audit_mode_reports_but_streams_unchanged() -> None:
    rewriter = SseRewriter(engine("audit", blockedPatterns=[{"name": "n", "pattern": "secret"}]))
    chunks = [openai_chunk("a secret and a@b.io"), openai_chunk(None, "stop"), b"data: [DONE]\n\n"]
    out, codes = run(rewriter, chunks)
    assert openai_text(out) == "a secret and a@b.io"
    assert sorted(codes) == ["blocked_pattern.n", "pii.email"]


def test_anthropic_stream_redacted_and_flushed_before_block_stop() -> None:
    chunks = [
        anthropic_event(
            "message_start", message={"usage": {"input_tokens": 10, "output_tokens": 1}}
        ),
        anthropic_event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        anthropic_event(
            "content_block_delta", index=0, delta={"type": "text_delta", "text": "ssn 123-45"}
        ),
        anthropic_event(
            "content_block_delta", index=0, delta={"type": "text_delta", "text": "-6789 ok"}
        ),
        anthropic_event("content_block_stop", index=0),
        anthropic_event("message_delta", delta={}, usage={"output_tokens": 5}),
        anthropic_event("message_stop"),
    ]
    rewriter = SseRewriter(engine())
    out, codes = run(rewriter, chunks)
    texts = [e["delta"]["text"] for e in events(out) if e["type"] == "content_block_delta"]
    assert "".join(texts) == f"ssn {placeholder('ssn')} ok"
    kinds = [e["type"] for e in events(out)]
    assert kinds.index("content_block_stop") > max(
        i for i, k in enumerate(kinds) if k == "content_block_delta"
    )
    assert codes == ["pii.ssn"]
    assert rewriter.usage_tokens == 16


def test_held_text_released_at_eof_without_done() -> None:
    out, _ = run(SseRewriter(engine(), hold=64), [openai_chunk("short answer")])
    assert openai_text(out) == "short answer"


def test_non_json_and_comment_events_pass_through() -> None:
    chunks = [b": keep-alive\n\n", b"data: not json\n\n"]
    out, codes = run(SseRewriter(engine()), chunks)
    assert out == b"".join(chunks) and codes == []


def test_usage_tokens_shapes() -> None:
    assert usage_tokens({"total_tokens": 7, "prompt_tokens": 3}) == 7
    assert usage_tokens({"input_tokens": 3, "output_tokens": 4}) == 7
    assert usage_tokens({}) is None and usage_tokens(None) is None


def tool_chunk(call: dict[str, Any], finish: str | None = None) -> bytes:
    delta = {"tool_calls": [{"index": 0, **call}]} if call else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def test_tool_call_identifiers_pass_at_once_and_arguments_tail_comes_before_finish() -> None:
    chunks = [
        tool_chunk(
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
        ),
        tool_chunk({"function": {"arguments": '{"q": "short"}'}}),
        tool_chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]
    rewriter = SseRewriter(engine(), hold=64)
    first = rewriter.feed(chunks[0]).data
    [call] = events(first)[0]["choices"][0]["delta"]["tool_calls"]
    assert call["id"] == "call_1" and call["function"]["name"] == "f"  # not held back
    out = first + b"".join(rewriter.feed(c).data for c in chunks[1:]) + rewriter.close().data
    chunks_out = events(out)
    arguments = "".join(
        t["function"].get("arguments", "")
        for e in chunks_out
        for t in e["choices"][0]["delta"].get("tool_calls", [])
    )
    assert arguments == '{"q": "short"}'
    synthetic = chunks_out[-2]  # the held tail, sent on its own just before the finish
    assert synthetic == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [{"index": 0, "function": {"arguments": '{"q": "short"}'}}]
                },
            }
        ],
    }
    assert chunks_out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_anthropic_message_delta_stop_reason_is_not_held() -> None:
    chunk = anthropic_event("message_delta", delta={"stop_reason": "end_turn"}, usage={})
    out = SseRewriter(engine()).feed(chunk).data
    assert out == chunk


def test_non_json_data_is_inspected_as_text() -> None:
    out, codes = run(SseRewriter(engine()), [b"data: mail a@b.io\ndata: bye\n\n"])
    assert out == f"data: mail {placeholder('email')}\ndata: bye\n\n".encode()
    assert codes == ["pii.email"]
