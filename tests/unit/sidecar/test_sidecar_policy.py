"""The pure policy engine: blocked patterns, PII actions, models, excerpts, streams, trust."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promethios.api.policy import GovernancePolicySpec
from promethios.sidecar.pii import placeholder
from promethios.sidecar.policy import PolicyEngine
from promethios.sidecar.scanner import StreamScanner
from promethios.sidecar.trust import TrustEstimator
from promethios.sidecar.walk import map_strings, string_values

SECRETS = {
    "email": "jane.doe@example.com",
    "phone": "(415) 555-0100",
    "creditCard": "4111 1111 1111 1111",
    "ssn": "123-45-6789",
    "apiKey": "sk-live-abcdefghijklmnopqrstuvwxyz",
}


def engine(
    mode: str = "enforce", provider_models: tuple[str, ...] = (), **spec: Any
) -> PolicyEngine:
    return PolicyEngine(GovernancePolicySpec.model_validate(spec), mode, provider_models)


def patterns(*items: dict[str, Any]) -> dict[str, Any]:
    return {"blockedPatterns": list(items)}


NO_PII = {"piiDetection": {"enabled": False}}


# -- blocked patterns --------------------------------------------------------------


def test_blocked_pattern_blocks_in_enforce() -> None:
    e = engine(**patterns({"name": "secret-project", "pattern": r"project\s+x"}), **NO_PII)
    verdict = e.inspect_text("tell me about Project  X please", "request")
    assert verdict.blocked is not None
    assert verdict.blocked.code == "blocked_pattern.secret-project"
    assert verdict.blocked.rule == "blockedPatterns.secret-project"
    assert verdict.blocked.severity == "high"


def test_blocked_pattern_only_reports_in_audit() -> None:
    e = engine("audit", **patterns({"name": "p", "pattern": "forbidden"}), **NO_PII)
    verdict = e.inspect_text("a forbidden word", "request")
    assert verdict.blocked is None
    assert [f.action for f in verdict.findings] == ["report"]
    assert verdict.text == "a forbidden word"


def test_case_sensitive_pattern() -> None:
    e = engine(
        **patterns({"name": "p", "pattern": "Forbidden", "caseInsensitive": False}), **NO_PII
    )
    assert e.inspect_text("forbidden", "request").findings == []
    assert len(e.inspect_text("Forbidden", "request").findings) == 1


@pytest.mark.parametrize(
    ("scope", "request_hit", "response_hit"),
    [("request", True, False), ("response", False, True), ("both", True, True)],
)
def test_pattern_scope(scope: str, request_hit: bool, response_hit: bool) -> None:
    e = engine(**patterns({"name": "p", "pattern": "zebra", "appliesTo": scope}), **NO_PII)
    assert bool(e.inspect_text("zebra", "request").findings) is request_hit
    assert bool(e.inspect_text("zebra", "response").findings) is response_hit


def test_pattern_severity_comes_from_policy() -> None:
    e = engine(**patterns({"name": "p", "pattern": "x+y", "severity": "critical"}), **NO_PII)
    assert e.inspect_text("xxy", "request").findings[0].severity == "critical"


# -- PII ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_pii_redacted_in_enforce(kind: str) -> None:
    e = engine(piiDetection={"action": "redact"})
    verdict = e.inspect_text(f"my value is {SECRETS[kind]} ok", "request")
    assert verdict.blocked is None
    assert [f.code for f in verdict.findings] == [f"pii.{kind}"]
    assert verdict.text == f"my value is {placeholder(kind)} ok"


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_context_never_contains_the_raw_value(kind: str) -> None:
    e = engine("audit", **patterns({"name": "p", "pattern": "topsecret"}))
    other = [v for k, v in SECRETS.items() if k != kind]
    text = f"{other[0]} topsecret {SECRETS[kind]} and {other[1]}"
    verdict = e.inspect_text(text, "request")
    assert verdict.findings
    dumped = json.dumps(
        [f.context for f in verdict.findings] + [f.description for f in verdict.findings]
    )
    for secret in SECRETS.values():
        assert secret not in dumped
    assert "topsecret" not in dumped.lower()


def test_pii_block_action_blocks() -> None:
    e = engine(piiDetection={"action": "block", "types": ["ssn"], "severity": "critical"})
    verdict = e.inspect_text("ssn 123-45-6789", "request")
    assert verdict.blocked is not None and verdict.blocked.code == "pii.ssn"
    assert verdict.blocked.severity == "critical"


def test_pii_report_action_forwards_unchanged() -> None:
    e = engine(piiDetection={"action": "report"})
    verdict = e.inspect_text("mail a@b.io", "request")
    assert verdict.text == "mail a@b.io"
    assert [f.action for f in verdict.findings] == ["report"]


def test_pii_redact_in_audit_mode_only_reports() -> None:
    e = engine("audit", piiDetection={"action": "redact"})
    verdict = e.inspect_text("mail a@b.io", "request")
    assert verdict.text == "mail a@b.io"
    assert [f.action for f in verdict.findings] == ["report"]


def test_pii_disabled_finds_nothing() -> None:
    assert engine(**NO_PII).inspect_text("mail a@b.io", "request").findings == []


def test_pii_types_filter() -> None:
    e = engine(piiDetection={"types": ["email"]})
    verdict = e.inspect_text("a@b.io 123-45-6789", "request")
    assert [f.code for f in verdict.findings] == ["pii.email"]


# -- models ------------------------------------------------------------------------


def test_any_model_when_both_lists_empty() -> None:
    assert engine().check_model("whatever") is None


@pytest.mark.parametrize(
    ("policy_models", "provider_models", "model", "allowed"),
    [
        (["gpt-4o"], [], "gpt-4o", True),
        (["gpt-4o"], [], "gpt-3.5", False),
        ([], ["claude-3"], "claude-3", True),
        (["a", "b"], ["b", "c"], "b", True),
        (["a", "b"], ["b", "c"], "a", False),
        (["a", "b"], ["b", "c"], "c", False),
        (["a"], [], None, False),
    ],
)
def test_allowed_models_intersection(
    policy_models: list[str], provider_models: list[str], model: str | None, allowed: bool
) -> None:
    e = engine(provider_models=tuple(provider_models), allowedModels=policy_models)
    finding = e.check_model(model)
    assert (finding is None) is allowed
    if finding is not None:
        assert finding.code == "model_not_allowed" and finding.blocks


def test_model_not_allowed_reports_in_audit() -> None:
    finding = engine("audit", allowedModels=["a"]).check_model("b")
    assert finding is not None and not finding.blocks


# -- payloads ----------------------------------------------------------------------


def test_map_strings_touches_every_string_keys_included() -> None:
    payload = {
        "model": "a@b.io",
        "messages": [
            {"role": "user", "content": "mail a@b.io"},
            {"role": "user", "content": [{"type": "text", "text": "x a@b.io"}]},
        ],
        "tools": [{"function": {"description": "d", "parameters": {"q": {"enum": ["e"]}}}}],
        "n": 2,
        "stream": True,
    }
    out = map_strings(payload, str.upper)
    assert out["MODEL"] == "A@B.IO" and out["MESSAGES"][0]["ROLE"] == "USER"
    assert out["MESSAGES"][1]["CONTENT"][0] == {"TYPE": "TEXT", "TEXT": "X A@B.IO"}
    assert out["TOOLS"][0]["FUNCTION"]["PARAMETERS"]["Q"]["ENUM"] == ["E"]
    assert out["N"] == 2 and out["STREAM"] is True
    assert payload["messages"][0]["content"] == "mail a@b.io"  # the original is not mutated


def test_map_strings_keeps_keys_apart_when_a_redaction_makes_them_equal() -> None:
    out = map_strings({"a@b.io": 1, "c@d.io": 2}, lambda s: "[x]" if "@" in s else s)
    assert out == {"[x]": 1, "[x]_": 2}


def test_inspect_payload_redacts_openai_and_anthropic_shapes() -> None:
    e = engine()
    openai = {"model": "m", "messages": [{"role": "user", "content": "hi a@b.io"}]}
    anthropic = {
        "model": "m",
        "system": "x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "ssn 123-45-6789"}]}],
    }
    v1 = e.inspect_payload(openai, "request")
    v2 = e.inspect_payload(anthropic, "request")
    assert v1.payload["messages"][0]["content"] == f"hi {placeholder('email')}"
    assert v2.payload["messages"][0]["content"][0]["text"] == f"ssn {placeholder('ssn')}"
    assert [f.code for f in v1.findings + v2.findings] == ["pii.email", "pii.ssn"]


def test_string_values() -> None:
    assert sorted(string_values({"input": ["a", "b"], "model": "m", "n": 1})) == ["a", "b", "m"]


def test_inspects_responses() -> None:
    assert engine().inspects_responses
    assert not engine(**NO_PII).inspects_responses
    req_only = patterns({"name": "p", "pattern": "x", "appliesTo": "request"})
    assert not engine(**req_only, **NO_PII).inspects_responses


# -- stream scanner ----------------------------------------------------------------


def run_stream(e: PolicyEngine, deltas: list[str], hold: int = 16) -> tuple[str, list[str]]:
    scanner = StreamScanner(e, hold)
    out, codes = [], []
    for delta in deltas:
        verdict = scanner.feed(delta)
        out.append(verdict.text)
        codes += [f.code for f in verdict.findings]
    verdict = scanner.flush()
    out.append(verdict.text)
    codes += [f.code for f in verdict.findings]
    return "".join(out), codes


def test_stream_redacts_email_split_across_deltas() -> None:
    text, codes = run_stream(engine(), ["contact jane.d", "oe@exam", "ple.com", " for more"])
    assert text == f"contact {placeholder('email')} for more"
    assert codes == ["pii.email"]


def test_stream_reports_each_match_once() -> None:
    e = engine("audit", piiDetection={"types": ["ssn"]})
    deltas = ["a 123-4", "5-6789 b ", "c" * 40, " 234-56-7890", " end"]
    text, codes = run_stream(e, deltas)
    assert text == "".join(deltas)
    assert codes == ["pii.ssn", "pii.ssn"]


def test_stream_detects_blocked_pattern_split_across_deltas_before_release() -> None:
    e = engine(**patterns({"name": "launch", "pattern": "launch codes"}), **NO_PII)
    scanner = StreamScanner(e, 16)
    first = scanner.feed("here are the laun")
    assert "laun" not in first.text  # held back
    second = scanner.feed("ch codes: 1234")
    assert second.blocked is not None and second.blocked.code == "blocked_pattern.launch"
    assert "launch" not in first.text + second.text


def test_stream_releases_text_beyond_the_hold() -> None:
    scanner = StreamScanner(engine(), 8)
    verdict = scanner.feed("x" * 20)
    assert verdict.text == "x" * 12
    assert scanner.flush().text == "x" * 8
    assert scanner.released == 20


# -- trust -------------------------------------------------------------------------


def test_trust_drops_by_weight_and_recovers() -> None:
    spec = GovernancePolicySpec.model_validate({"trustScoring": {"recoveryPerHour": 0.1}})
    trust = TrustEstimator(spec, now=0)
    trust.record("high", now=0)  # 0.15
    trust.record("critical", now=0)  # 0.4
    assert trust.value(0) == pytest.approx(45.0)
    assert trust.value(3600) == pytest.approx(55.0)
    assert trust.value(10 * 3600) == 100.0


def test_trust_never_negative() -> None:
    trust = TrustEstimator(GovernancePolicySpec(), now=0)
    for _ in range(10):
        trust.record("critical", now=0)
    assert trust.value(0) == 0.0
