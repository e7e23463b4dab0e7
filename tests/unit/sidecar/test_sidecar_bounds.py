"""What the sidecar buffers and parses: the shape scan, the byte budget, the findings cap."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from promethios.api.policy import GovernancePolicySpec
from promethios.sidecar.bounds import ByteBudget, LimitExceeded, check_json_shape, read_bounded
from promethios.sidecar.policy import MAX_FINDINGS_PER_CALL, PolicyEngine


def shape(value: Any, depth: int = 64, nodes: int = 1000) -> None:
    check_json_shape(json.dumps(value).encode(), depth, nodes)


def test_depth_counts_nesting_not_brackets_inside_strings() -> None:
    shape({"a": [[["[[[[[[[[[{{{{{{{{{{"]]]}, depth=4)
    with pytest.raises(LimitExceeded) as caught:
        shape({"a": [[[[]]]]}, depth=4)
    assert caught.value.status == 400 and caught.value.limit == "maxJsonDepth"


def test_nodes_count_values_and_keys() -> None:
    shape({"a": 1, "b": [True, None, "x"]}, nodes=8)  # object, 2 keys, 1, list, 3 items
    with pytest.raises(LimitExceeded) as caught:
        shape({"a": 1, "b": [True, None, "x"]}, nodes=7)
    assert caught.value.status == 413 and "maxJsonNodes" in caught.value.message


def test_escaped_quotes_do_not_end_a_string() -> None:
    shape({"k": 'a "quoted" \\ [[[[[[[[ string'}, depth=1, nodes=3)


def test_malformed_json_is_left_to_the_parser() -> None:
    check_json_shape(b'{"a": "unterminated', 8, 100)
    check_json_shape(b"]]]]", 8, 100)


async def chunks(*parts: bytes) -> Any:
    for part in parts:
        yield part


async def test_read_bounded_refuses_declared_and_actual_excess() -> None:
    budget = ByteBudget(1000)
    with pytest.raises(LimitExceeded) as declared:
        await read_bounded(chunks(b"x"), 101, ("maxRequestBytes", 100), budget, "the body")
    assert declared.value.status == 413 and "maxRequestBytes" in declared.value.message
    with pytest.raises(LimitExceeded):
        await read_bounded(chunks(b"x" * 60, b"x" * 60), None, ("m", 100), budget, "the body")
    assert budget.free == 1000  # nothing kept after a refusal
    body, reservation = await read_bounded(chunks(b"ab", b"cd"), None, ("m", 100), budget, "b")
    assert body == b"abcd" and budget.free == 996
    await reservation.release()
    await reservation.release()
    assert budget.free == 1000


async def test_budget_makes_calls_wait_then_refuses_with_503() -> None:
    budget = ByteBudget(100, wait_seconds=0.2)
    first = await budget.reserve(80)
    waiting = asyncio.create_task(budget.reserve(50))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await first.release()
    second = await asyncio.wait_for(waiting, 1)
    assert budget.free == 50
    with pytest.raises(LimitExceeded) as caught:
        await budget.reserve(60)
    assert caught.value.status == 503 and "maxBufferedBytes" in caught.value.message
    await second.release()
    assert budget.free == 100


def test_findings_per_call_are_capped_but_a_block_always_shows() -> None:
    spec = {"blockedPatterns": [{"name": "nope", "pattern": "forbidden"}]}
    engine = PolicyEngine(GovernancePolicySpec.model_validate(spec), "enforce")
    body = {"m": [f"mail u{i}@example.com" for i in range(100)] + ["forbidden"]}
    verdict = engine.inspect_payload(body, "request")
    assert len(verdict.findings) == MAX_FINDINGS_PER_CALL + 1
    assert verdict.blocked is not None and verdict.blocked.code == "blocked_pattern.nope"
    assert not any("@example.com" in text for text in verdict.payload["m"])  # all redacted
