"""The policy engine: what the sidecar allows, redacts, blocks and reports.

Pure (no I/O, no clock): the proxy hands it texts, JSON payloads and model names,
and gets back :class:`Finding` objects (each one a violation to report) plus the
possibly redacted text. ``enforce`` mode blocks and redacts; ``audit`` mode only
reports, so the same finding list comes back in both modes and only the
``blocked`` / rewritten output differs.

A payload is inspected through one walk over every string in it (see
:mod:`.walk`), and each string also through its decoded views when it holds JSON
escapes (see :mod:`.escapes`), so nothing the model or the agent reads escapes.

Excerpts in findings are always redacted: the matched text is replaced by a
placeholder and every kind of PII around it is redacted too, so a violation
report never carries the raw prompt or the secret that was found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from promethios.api.common import GovernanceMode, Severity
from promethios.api.policy import GovernancePolicySpec, PatternScope, PiiAction, PiiType

from . import pii
from .escapes import decoded_views
from .walk import map_strings

Side = Literal["request", "response"]
Action = Literal["block", "redact", "report"]

EXCERPT_RADIUS = 40
EXCERPT_MAX = 200
#: Characters either side of a match sanitized for its excerpt (not the whole text).
EXCERPT_WINDOW = 4096
#: Findings (violations) one call can produce; past it only a blocking one is added.
MAX_FINDINGS_PER_CALL = 20

#: Short strings seen clean are remembered (keys, roles, model names): at most this many.
CLEAN_CACHE_SIZE = 4096
CLEAN_CACHE_MAX_LENGTH = 64

#: Severities of rules the policy has no severity field for.
SEVERITY_MODEL_NOT_ALLOWED = Severity.HIGH
SEVERITY_RATE_LIMIT = Severity.MEDIUM
SEVERITY_BUDGET = Severity.HIGH


@dataclass(frozen=True)
class Finding:
    """One breach of policy; becomes one violation report."""

    code: str  # violation type and error code, e.g. ``pii.email``
    rule: str  # the policy rule, e.g. ``piiDetection.email``
    severity: Severity
    description: str
    action: Action
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        """True if this finding stops the call (enforce mode only ever sets ``block``)."""
        return self.action == "block"


@dataclass
class TextVerdict:
    """The outcome of inspecting one text."""

    text: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocked(self) -> Finding | None:
        """The first finding that blocks, if any."""
        return next((f for f in self.findings if f.blocks), None)


@dataclass
class PayloadVerdict:
    """The outcome of inspecting a JSON payload: the rewritten payload and findings."""

    payload: Any
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocked(self) -> Finding | None:
        """The first finding that blocks, if any."""
        return next((f for f in self.findings if f.blocks), None)


@dataclass(frozen=True, eq=False)
class _Span:
    start: int
    end: int
    label: str  # placeholder kind
    finding_code: str
    redact: bool  # replaced in the forwarded text (enforce + redact)


def all_pii(text: str) -> list[tuple[int, int, str]]:
    """Every PII value of every kind in ``text`` or in its decoded views, in raw positions."""
    kinds = list(PiiType)
    found = [(m.start, m.end, m.kind.value) for m in pii.find_pii(text, kinds)]
    for view in decoded_views(text):
        for m in pii.find_pii(view.text, kinds):
            found.append((*view.raw_span(m.start, m.end), m.kind.value))
    return found


def sanitize(text: str, spans: Iterable[_Span]) -> tuple[str, dict[_Span, tuple[int, int]]]:
    """``text`` with every span and every PII value redacted, and where each span landed.

    Redacting the whole text before cutting an excerpt means the excerpt's edges
    can never cut a secret in half and leave a recognisable part of it behind.
    """
    spans = list(spans)
    all_spans: list[tuple[int, int, str, _Span | None]] = [
        (s.start, s.end, s.label, s) for s in spans
    ]
    all_spans += [(start, end, kind, None) for start, end, kind in all_pii(text)]
    # Earliest first, longest first; overlapping spans merge into the first one.
    all_spans.sort(key=lambda item: (item[0], -item[1]))
    out: list[str] = []
    where: dict[_Span, tuple[int, int]] = {}
    cursor = length = 0
    last_start = 0
    for start, end, label, span in all_spans:
        if start < cursor:  # inside a span already redacted
            if span is not None:
                where[span] = (last_start, length)
            cursor = max(cursor, end)
            continue
        out.append(text[cursor:start])
        length += start - cursor
        last_start = length
        marker = pii.placeholder(label)
        out.append(marker)
        length += len(marker)
        if span is not None:
            where[span] = (last_start, length)
        cursor = end
    out.append(text[cursor:])
    return "".join(out), where


def _excerpt(text: str, span: _Span, spans: list[_Span]) -> str:
    """The excerpt for ``span``: a window around it, sanitized, then cut short."""
    lo, hi = max(0, span.start - EXCERPT_WINDOW), min(len(text), span.end + EXCERPT_WINDOW)
    shifted = {
        s: _Span(max(s.start, lo) - lo, min(s.end, hi) - lo, s.label, s.finding_code, s.redact)
        for s in spans
        if s.start < hi and s.end > lo
    }
    sanitized, where = sanitize(text[lo:hi], shifted.values())
    return excerpt_of(sanitized, where[shifted[span]])


def excerpt_of(sanitized: str, where: tuple[int, int]) -> str:
    """A short excerpt of an already sanitized text around one redacted span."""
    start, end = where
    lo, hi = max(0, start - EXCERPT_RADIUS), min(len(sanitized), end + EXCERPT_RADIUS)
    excerpt = f"{'…' if lo else ''}{sanitized[lo:hi]}{'…' if hi < len(sanitized) else ''}"
    return excerpt[:EXCERPT_MAX]


class PolicyEngine:
    """Compiled policy for one mode; all methods are pure."""

    def __init__(
        self,
        policy: GovernancePolicySpec,
        mode: GovernanceMode | str,
        provider_allowed_models: Iterable[str] = (),
    ) -> None:
        self.policy = policy
        self.enforce = GovernanceMode(mode) == GovernanceMode.ENFORCE
        self.allowed_models = _intersect(policy.allowed_models, list(provider_allowed_models))
        self._patterns = [
            (
                p.name,
                re.compile(p.pattern, re.IGNORECASE if p.case_insensitive else 0),
                PatternScope(p.applies_to),
                Severity(p.severity),
            )
            for p in policy.blocked_patterns
        ]
        self._patterns_for: dict[Side, list[tuple[str, re.Pattern[str]]]] = {
            side: [
                (name, regex)
                for name, regex, scope, _ in self._patterns
                if scope in (PatternScope.BOTH, PatternScope(side))
            ]
            for side in ("request", "response")
        }
        detection = policy.pii_detection
        self._pii_kinds = [str(k) for k in detection.types] if detection.enabled else []
        self._pii_action = PiiAction(detection.action)
        self._pii_severity = Severity(detection.severity)
        self._clean: dict[Side, set[str]] = {"request": set(), "response": set()}

    # -- models ---------------------------------------------------------------

    def check_model(self, model: str | None) -> Finding | None:
        """A ``model_not_allowed`` finding if ``model`` is outside the allowed set."""
        if self.allowed_models is None or model in self.allowed_models:
            return None
        return Finding(
            code="model_not_allowed",
            rule="allowedModels",
            severity=SEVERITY_MODEL_NOT_ALLOWED,
            description=f"model {model!r} is not in the allowed models",
            action=self._block_action(),
            context={"model": model, "allowedModels": sorted(self.allowed_models)},
        )

    # -- texts ----------------------------------------------------------------

    def inspect_text(
        self, text: str, side: Side, limit: int = MAX_FINDINGS_PER_CALL
    ) -> TextVerdict:
        """Blocked patterns and PII in one text; the text comes back redacted if required.

        At most ``limit`` findings, blocking ones first; ``limit`` 0 means only a
        blocking one, below 0 none (every match is still redacted).
        """
        clean = self._clean[side]
        if text in clean:
            return TextVerdict(text)
        spans = self._spans(text, side)
        if not spans:
            if len(text) <= CLEAN_CACHE_MAX_LENGTH:
                if len(clean) >= CLEAN_CACHE_SIZE:
                    clean.clear()
                clean.add(text)
            return TextVerdict(text)
        findings = self._findings(text, spans, side, limit)
        redacted = pii.redact_spans(text, ((s.start, s.end, s.label) for s in spans if s.redact))
        return TextVerdict(redacted, findings)

    def inspect_payload(self, payload: Any, side: Side) -> PayloadVerdict:
        """Every string inside a JSON payload, keys included, whatever its shape.

        At most :data:`MAX_FINDINGS_PER_CALL` findings (plus one that blocks).
        """
        findings: list[Finding] = []
        blocked: list[Finding] = []
        clean = self._clean[side]

        def visit(text: str) -> str:
            if text in clean:  # keys, roles, model names: seen clean before
                return text
            room = MAX_FINDINGS_PER_CALL - len(findings)
            verdict = self.inspect_text(text, side, room if room > 0 else -1 if blocked else 0)
            findings.extend(verdict.findings)
            blocked.extend(f for f in verdict.findings if f.blocks)
            return verdict.text

        return PayloadVerdict(map_strings(payload, visit), findings)

    @property
    def inspects_responses(self) -> bool:
        """True if any rule applies to completions (else streams pass through untouched)."""
        return bool(self._pii_kinds) or any(
            scope != PatternScope.REQUEST for _, _, scope, _ in self._patterns
        )

    def _spans(self, text: str, side: Side) -> list[_Span]:
        """Every match in ``text`` and in its decoded views, in raw positions, deduplicated."""
        spans = self._raw_spans(text, side)
        for view in decoded_views(text):
            for found in self._raw_spans(view.text, side):
                start, end = view.raw_span(found.start, found.end)
                mapped = _Span(start, end, found.label, found.finding_code, found.redact)
                if not any(_same_match(mapped, known) for known in spans):
                    spans.append(mapped)
        spans.sort(key=lambda s: (s.start, s.end))
        return spans

    def _raw_spans(self, text: str, side: Side) -> list[_Span]:
        spans: list[_Span] = []
        for name, regex in self._patterns_for[side]:
            for match in regex.finditer(text):
                if match.end() > match.start():
                    spans.append(
                        _Span(
                            match.start(), match.end(), "blocked", f"blocked_pattern.{name}", False
                        )
                    )
        redact = self.enforce and self._pii_action == PiiAction.REDACT
        for found in pii.find_pii(text, self._pii_kinds) if self._pii_kinds else ():
            spans.append(
                _Span(found.start, found.end, found.kind.value, f"pii.{found.kind.value}", redact)
            )
        return spans

    def _findings(
        self, text: str, spans: list[_Span], side: Side, limit: int = MAX_FINDINGS_PER_CALL
    ) -> list[Finding]:
        """A finding per span (at most ``limit``, blocking first), each with an excerpt."""
        if limit < 0 or not spans:
            return []
        blocking_first = sorted(spans, key=lambda s: not self._blocks(s))
        chosen = blocking_first[: max(limit, 1)]
        if limit == 0:
            chosen = [s for s in chosen if self._blocks(s)]
        chosen.sort(key=lambda s: (s.start, s.end))
        return [self._finding(_excerpt(text, s, spans), s, side) for s in chosen]

    def _blocks(self, span: _Span) -> bool:
        """True if a span stops the call (enforce mode: patterns, PII with action block)."""
        if span.finding_code.startswith("blocked_pattern."):
            return self.enforce
        return self._pii_effective_action() == "block"

    def _finding(self, excerpt: str, span: _Span, side: Side) -> Finding:
        if span.finding_code.startswith("blocked_pattern."):
            name = span.finding_code.split(".", 1)[1]
            severity = next(s for n, _, _, s in self._patterns if n == name)
            return Finding(
                code=span.finding_code,
                rule=f"blockedPatterns.{name}",
                severity=severity,
                description=f"{side} matches blocked pattern {name!r}",
                action=self._block_action(),
                context={"side": side, "excerpt": excerpt},
            )
        kind = span.label
        return Finding(
            code=span.finding_code,
            rule=f"piiDetection.{kind}",
            severity=self._pii_severity,
            description=f"{side} contains PII ({kind})",
            action=self._pii_effective_action(),
            context={"side": side, "excerpt": excerpt},
        )

    def _block_action(self) -> Action:
        return "block" if self.enforce else "report"

    def _pii_effective_action(self) -> Action:
        if not self.enforce or self._pii_action == PiiAction.REPORT:
            return "report"
        return "block" if self._pii_action == PiiAction.BLOCK else "redact"

    # -- limits (findings built here so codes and shapes live in one place) ---

    def limit_finding(self, code: str, retry_after: float, detail: str) -> Finding:
        """A rate-limit or budget finding (``rate_limit.requests|tokens``, ``budget.exhausted``)."""
        rule = {
            "rate_limit.requests": "rateLimits.requestsPerMinute",
            "rate_limit.tokens": "rateLimits.tokensPerMinute",
            "budget.exhausted": "budget.tokens",
        }[code]
        severity = SEVERITY_BUDGET if code == "budget.exhausted" else SEVERITY_RATE_LIMIT
        return Finding(
            code=code,
            rule=rule,
            severity=severity,
            description=detail,
            action=self._block_action(),
            context={"retryAfterSeconds": round(retry_after, 3)},
        )


def _intersect(policy_models: list[str], provider_models: list[str]) -> frozenset[str] | None:
    """Allowed models: the intersection of both lists, an empty list meaning any."""
    if not policy_models and not provider_models:
        return None
    if not policy_models:
        return frozenset(provider_models)
    if not provider_models:
        return frozenset(policy_models)
    return frozenset(policy_models) & frozenset(provider_models)


def _same_match(a: _Span, b: _Span) -> bool:
    """True if two spans are one match seen twice (in the raw text and in a view)."""
    return a.finding_code == b.finding_code and a.start < b.end and b.start < a.end
