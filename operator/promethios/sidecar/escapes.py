"""JSON string escapes undone, so a pattern split by escaping is still seen.

Model calls carry JSON text inside strings (OpenAI's tool-call ``arguments``,
Anthropic's ``partial_json``), where ``@`` may be written ``\\u0040`` and ``"`` as
``\\"``, and text may be encoded more than once. The model reads through the
escapes, so the policy must too: for a string holding a backslash it also
inspects decoded views, each with a map from every decoded character back to the
raw one, so a match found in a view is redacted in the raw text.

Bounded, whatever the string's size: views are cut into windows of
:data:`WINDOW` characters overlapping by :data:`OVERLAP` (a match longer than
that, across a window boundary, is not seen in the decoded view), and at most
:data:`MAX_LEVELS` layers of escaping are undone. Pure.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

WINDOW = 16_384
OVERLAP = 1_024
MAX_LEVELS = 3

_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class View:
    """A decoded window of a raw string and where each of its characters came from."""

    text: str
    offsets: array[int]  # raw index of each decoded character, plus one for the end
    base: int  # where the window starts in the raw string

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The raw ``[start, end)`` a decoded ``[start, end)`` was written as."""
        return self.base + self.offsets[start], self.base + self.offsets[end]


def decode_once(text: str) -> tuple[str, array[int]] | None:
    """``text`` with one layer of JSON escapes undone and its offset map; None if none."""
    pieces: list[str] = []
    offsets: array[int] = array("l")
    cursor = 0
    for match in _ESCAPE.finditer(text):
        start = match.start()
        pieces.append(text[cursor:start])
        offsets.extend(range(cursor, start))
        code, simple = match.groups()
        pieces.append(chr(int(code, 16)) if code else _SIMPLE[simple])
        offsets.append(start)
        cursor = match.end()
    if cursor == 0:
        return None
    pieces.append(text[cursor:])
    offsets.extend(range(cursor, len(text) + 1))
    return "".join(pieces), offsets


def decoded_views(text: str) -> Iterator[View]:
    """Every decoded view of ``text`` worth inspecting (none if it has no escapes)."""
    if "\\" not in text:
        return
    start = 0
    while True:
        window = text[start : start + WINDOW]
        if "\\" in window:
            yield from _layers(window, start)
        if start + WINDOW >= len(text):
            return
        start += WINDOW - OVERLAP


def _layers(window: str, base: int) -> Iterator[View]:
    view, offsets = window, None
    for _ in range(MAX_LEVELS):
        decoded = decode_once(view)
        if decoded is None:
            return
        view, layer = decoded
        offsets = layer if offsets is None else array("l", (offsets[i] for i in layer))
        yield View(view, offsets, base)
        if "\\" not in view:
            return
