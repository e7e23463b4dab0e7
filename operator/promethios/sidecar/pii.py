"""Detectors for personal data and secrets, the Luhn check, and redaction.

Pure functions over strings (no I/O), used by :mod:`.policy`. Each detector is a
regular expression plus an optional validator (credit cards must pass the Luhn
check, so order numbers and timestamps are not reported as cards). Matches never
overlap: when two detectors match the same text the earlier, then longer, wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from promethios.api.policy import PiiType

#: What replaces a redacted value; names the kind so the model still gets the gist.
REDACTION_TEMPLATE = "[REDACTED:{kind}]"


def luhn_valid(digits: str) -> bool:
    """True if ``digits`` (digits only) passes the Luhn checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    # 13-19 digits is every issuer's range; all-same digits pass Luhn but are never real.
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


@dataclass(frozen=True)
class Detector:
    """One kind of PII: a pattern, a cheap pre-check and an optional validator."""

    kind: PiiType
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] | None = None
    #: Something every match contains; texts without it skip the costly pattern.
    hint: re.Pattern[str] | None = None


# Order matters only for ties at the same start: more specific detectors first.
DETECTORS: tuple[Detector, ...] = (
    Detector(
        PiiType.API_KEY,
        re.compile(
            r"(?<![A-Za-z0-9])(?:"
            r"sk-[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic (sk-proj-, sk-ant-)
            r"|AKIA[0-9A-Z]{16}"  # AWS access key id
            r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
            r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
            r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
            r"|[Bb]earer\s+[A-Za-z0-9._~+/=-]{16,}"  # bearer tokens in pasted headers
            r")"
        ),
        hint=re.compile(r"sk-|AKIA|gh[pousr]_|xox|AIza|earer"),
    ),
    Detector(
        PiiType.EMAIL,
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        ),
        hint=re.compile("@"),
    ),
    Detector(
        PiiType.CREDIT_CARD,
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"),
        _card_ok,
        re.compile(r"\d[ -]?\d[ -]?\d"),
    ),
    Detector(
        PiiType.SSN,
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
        hint=re.compile(r"\d{3}-\d\d-"),
    ),
    Detector(
        PiiType.PHONE,
        re.compile(
            r"(?<![\w+])(?:"
            # international, E.164-ish: +CC then 6-14 more digits in groups
            r"\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}"
            # North American: (415) 555-0100, 415-555-0100, 415.555.0100
            r"|(?:1[ .-]?)?(?:\([2-9]\d{2}\)\s?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}"
            r")(?![\w])"
        ),
        lambda text: 7 <= sum(c.isdigit() for c in text) <= 15,
        re.compile(r"\+\d|\d{3}"),
    ),
)


@dataclass(frozen=True)
class PiiMatch:
    """Where one piece of PII was found in a text."""

    kind: PiiType
    start: int
    end: int


def find_pii(text: str, kinds: Iterable[str]) -> list[PiiMatch]:
    """Every non-overlapping PII match of the given kinds in ``text``, in text order."""
    wanted = set(kinds)
    candidates: list[PiiMatch] = []
    for detector in DETECTORS:
        if detector.kind.value not in wanted:
            continue
        if detector.hint is not None and detector.hint.search(text) is None:
            continue
        for match in detector.pattern.finditer(text):
            if detector.validate is None or detector.validate(match.group(0)):
                candidates.append(PiiMatch(detector.kind, match.start(), match.end()))
    return _without_overlaps(candidates)


def _without_overlaps(matches: list[PiiMatch]) -> list[PiiMatch]:
    # Earliest first, then longest: a card number is not also reported as a phone number.
    matches.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[PiiMatch] = []
    for match in matches:
        if not kept or match.start >= kept[-1].end:
            kept.append(match)
    return kept


def placeholder(kind: str) -> str:
    """The text that replaces a redacted value of ``kind``."""
    return REDACTION_TEMPLATE.format(kind=kind)


def redact_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with the value of each ``(start, end, kind)`` span replaced by a placeholder.

    Each matched value is replaced wherever it occurs (it is the same secret), by
    ``str.replace``: a long text is copied once per value, never cut into slices
    that would double it in memory. Overlapping spans count once (the first).
    """
    values: dict[str, str] = {}
    cursor = 0
    for start, end, kind in sorted(spans):
        if start >= cursor:
            values.setdefault(text[start:end], kind)
            cursor = end
    for value in sorted(values, key=len, reverse=True):  # a longer value may contain a shorter
        text = text.replace(value, placeholder(values[value]))
    return text


def redact(text: str, matches: Iterable[PiiMatch]) -> str:
    """``text`` with every match replaced by its placeholder."""
    return redact_spans(text, ((m.start, m.end, m.kind.value) for m in matches))
