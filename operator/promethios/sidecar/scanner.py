"""Incremental policy checks on one streamed text (a choice, a block, a tool call's arguments)."""

from __future__ import annotations

from . import pii
from .policy import PolicyEngine, TextVerdict

#: A streamed tail holding escapes is held this many times longer (``\\u0040`` is 6 for 1).
ESCAPED_HOLD_FACTOR = 8


class StreamScanner:
    """Incremental inspection of a streamed completion text.

    Text is held back by up to ``hold`` characters so a match split across two
    deltas is still seen whole before any of it reaches the agent. A match is
    decided (reported, redacted or blocking) only once it ends before the
    held-back tail, so it is reported exactly once. A tail holding JSON escapes
    is held :data:`ESCAPED_HOLD_FACTOR` times longer, as decoded it is that much
    shorter. Limit: a match longer than the hold whose start was already
    released is not detected.
    """

    def __init__(self, engine: PolicyEngine, hold: int) -> None:
        self.engine = engine
        self.hold = hold
        self._pending = ""
        self.released = 0  # characters released so far, for token estimates

    def feed(self, delta: str) -> TextVerdict:
        """Add a delta; returns the text that may be released now and the findings."""
        self._pending += delta
        return self._release(final=False)

    def flush(self) -> TextVerdict:
        """Release everything still held (end of the stream)."""
        return self._release(final=True)

    def _release(self, final: bool) -> TextVerdict:
        text = self._pending
        spans = self.engine._spans(text, "response")
        blocking = [s for s in spans if self.engine._blocks(s)]
        if blocking:
            # A complete blocking match stops the stream at once, held tail or not.
            return TextVerdict("", self.engine._findings(text, blocking[:1], "response"))
        hold = self.hold
        if "\\" in text[-hold * ESCAPED_HOLD_FACTOR :]:
            hold *= ESCAPED_HOLD_FACTOR  # escaped text: hold as many characters once decoded
        cut = len(text) if final else max(0, len(text) - hold)
        # Latest match first, so moving the cut back never uncovers a straddling one.
        for span in sorted(spans, key=lambda s: s.start, reverse=True):
            if span.start < cut < span.end:
                cut = span.start  # a match reaching into the held tail may still grow
        done = [s for s in spans if s.end <= cut]
        findings = self.engine._findings(text, done, "response")
        released = pii.redact_spans(
            text[:cut], ((s.start, s.end, s.label) for s in done if s.redact)
        )
        self._pending = text[cut:]
        self.released += cut
        return TextVerdict(released, findings)
