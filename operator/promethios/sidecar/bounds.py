"""Bounds on what the sidecar buffers and parses.

The sidecar runs under a small memory limit, and an OOM kill restarts it with
empty rate windows and budget: a body that is cheap to send but costly to hold is
an escape. So, with the limits of :class:`~promethios.api.sidecarconfig.SidecarLimits`:

- bodies are read with a byte limit (the declared length is checked first);
- the JSON's shape is checked before it is parsed, by a scan that builds
  nothing: nesting depth and the number of values and keys (3 MB of ``{}`` is a
  million dicts once parsed);
- the bytes held by concurrent calls share one :class:`ByteBudget`: a call
  waits for room before its body is read.

A breach raises :class:`LimitExceeded`, which names the limit (its config key).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

_SKIP = re.compile(rb"[ \t\r\n,:]*")
_STRING_TAIL = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_SCALAR = re.compile(rb'[^ \t\r\n,:\[\]{}"]+')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
#: How long a call waits for room in the byte budget before it is refused (503).
BUDGET_WAIT_SECONDS = 30.0


class LimitExceeded(Exception):
    """A body breaks one of the sidecar's limits."""

    def __init__(self, status: int, limit: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.limit = limit  # the config key, e.g. ``maxRequestBytes``
        self.message = message


def too_large(limit: str, value: int, what: str) -> LimitExceeded:
    """The 413 for a body over a byte limit."""
    return LimitExceeded(413, limit, f"{what} exceeds {limit} ({value} bytes)")


async def read_bounded(
    chunks: AsyncIterator[bytes],
    declared: int | None,
    limit: tuple[str, int],
    budget: ByteBudget,
    what: str,
) -> tuple[bytearray, Reservation]:
    """Read a body of at most ``limit`` = (config key, bytes), holding its bytes in ``budget``.

    The declared length is checked, then reserved at once; a body of unknown
    length reserves as it arrives. The caller releases the reservation.
    """
    name, most = limit
    if declared is not None and declared > most:
        raise too_large(name, most, what)
    reservation = await budget.reserve(declared or 0)
    body = bytearray()
    try:
        async for chunk in chunks:
            if len(body) + len(chunk) > most:
                raise too_large(name, most, what)
            if len(body) + len(chunk) > reservation.amount:
                await reservation.grow(len(body) + len(chunk) - reservation.amount)
            body += chunk
    except BaseException:
        await reservation.release()
        raise
    return body, reservation


def check_json_shape(body: bytes | bytearray, max_depth: int, max_nodes: int) -> None:
    """Refuse a body nested deeper than ``maxJsonDepth`` or with more than ``maxJsonNodes``.

    Counts values and keys without building them; strings are skipped whole by a
    regular expression. Malformed JSON is left for the parser to refuse. A body too
    short to hold ``max_nodes`` values, with too few brackets to nest ``max_depth``
    deep, needs no scan (each value takes at least a byte).
    """
    if len(body) <= max_nodes and body.count(b"[") + body.count(b"{") <= max_depth:
        return
    depth = nodes = pos = 0
    end = len(body)
    while True:
        pos = _match_end(_SKIP, body, pos)
        if pos >= end:
            return
        char = body[pos]
        if char in _CLOSE:
            depth -= 1
            pos += 1
            continue
        nodes += 1
        if char in _OPEN:
            depth += 1
            pos += 1
            if depth > max_depth:
                raise LimitExceeded(
                    400, "maxJsonDepth", f"JSON nested deeper than maxJsonDepth ({max_depth})"
                )
        elif char == _QUOTE:
            string = _STRING_TAIL.match(body, pos + 1)
            if string is None:
                return  # unterminated: the parser refuses it
            pos = string.end()
        else:
            pos = max(pos + 1, _match_end(_SCALAR, body, pos))
        if nodes > max_nodes:
            raise LimitExceeded(
                413,
                "maxJsonNodes",
                f"JSON has more than maxJsonNodes ({max_nodes}) values and keys",
            )


def _match_end(pattern: re.Pattern[bytes], body: bytes | bytearray, pos: int) -> int:
    match = pattern.match(body, pos)
    return match.end() if match else pos


class ByteBudget:
    """Bytes that concurrent calls may hold at once (``maxBufferedBytes``).

    A call waits for its share; after :data:`BUDGET_WAIT_SECONDS` it is refused
    with a 503 naming the limit, so a flood degrades into refusals, not an OOM kill.
    """

    def __init__(self, total: int, wait_seconds: float = BUDGET_WAIT_SECONDS) -> None:
        self.total = total
        self.free = total
        self.wait_seconds = wait_seconds
        self._changed = asyncio.Condition()

    async def reserve(self, amount: int) -> Reservation:
        """Wait for ``amount`` bytes (at most the total) and hold them."""
        reservation = Reservation(self)
        await reservation.grow(amount)
        return reservation

    async def _take(self, amount: int) -> None:
        try:
            async with asyncio.timeout(self.wait_seconds), self._changed:
                await self._changed.wait_for(lambda: self.free >= amount)
                self.free -= amount
        except TimeoutError:
            raise LimitExceeded(
                503,
                "maxBufferedBytes",
                f"the sidecar holds maxBufferedBytes ({self.total}) of other calls' bodies; "
                "retry shortly",
            ) from None

    async def _give_back(self, amount: int) -> None:
        async with self._changed:
            self.free += amount
            self._changed.notify_all()


class Reservation:
    """Bytes held from a :class:`ByteBudget`; ``release()`` may be called more than once."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.amount = 0

    async def grow(self, amount: int) -> None:
        """Hold ``amount`` more bytes (waits for room; the total caps what one call holds)."""
        amount = max(0, min(amount, self._budget.total - self.amount))
        if amount:
            await self._budget._take(amount)
            self.amount += amount

    async def release(self) -> None:
        """Give the bytes back (once)."""
        amount, self.amount = self.amount, 0
        if amount:
            await self._budget._give_back(amount)
