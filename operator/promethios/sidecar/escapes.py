"""JSON string escapes undone, so a pattern split by escaping is still seen.

Model calls carry JSON text inside strings (OpenAI's tool-call ``arguments``,
Anthropic's ``partial_json``), where ``@`` may be written ``\\u0040`` and ``"`` as
``\\"``, and text may be encoded more than once. The model reads through the
escapes, so the policy must too: for a string holding a backslash it also
inspects decoded views, each with a map from every decoded character back to the
raw one (built only when a match is found there), so a match found in a view is
redacted in the raw text.

Bounded, whatever the string's size: views are cut into windows of
:data:`WINDOW` characters overlapping by :data:`OVERLAP` (a match longer than
that, across a window boundary, is not seen in the decoded view), and at most
:data:`MAX_LEVELS` layers of escaping are undone. Pure.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator

WINDOW = 16_384
OVERLAP = 1_024
MAX_LEVELS = 3

_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class View:
    """A decoded window of a raw string; where its characters came from is worked out
    only when asked (a match was found), so a clean view costs one ``re.subn``."""

    def __init__(self, text: str, window: str, base: int, level: int) -> None:
        self.text = text
        self._window = window  # the raw window the view was decoded from
        self.base = base  # where the window starts in the raw string
        self._level = level  # layers of escaping undone
        self._offsets: array[int] | None = None

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The raw ``[start, end)`` a decoded ``[start, end)`` was written as."""
        offsets = self.offsets
        return self.base + offsets[start], self.base + offsets[end]

    @property
    def offsets(self) -> array[int]:
        """The raw index of each decoded character, plus one for the end."""
        if self._offsets is None:
            view, offsets = self._window, None
            for _ in range(self._level):
                decoded = decode_once(view)
                assert decoded is not None  # the fast path found escapes here
                view, layer = decoded
                offsets = layer if offsets is None else array("l", (offsets[i] for i in layer))
            assert offsets is not None
            self._offsets = offsets
        return self._offsets


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
    view = window
    for level in range(1, MAX_LEVELS + 1):
        view, count = _ESCAPE.subn(_unescape, view)
        if not count:
            return
        yield View(view, window, base, level)
        if "\\" not in view:
            return


def _unescape(match: re.Match[str]) -> str:
    code, simple = match.groups()
    return chr(int(code, 16)) if code else _SIMPLE[simple]
