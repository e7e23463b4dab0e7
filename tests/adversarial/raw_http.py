"""A raw HTTP/1.1 client for attacks: sends the request line byte for byte.

Client libraries normalise what an attacker would not (``..`` segments,
percent-encodings, backslashes), so the attacks are written to the socket as is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

REQUEST_SECONDS = 10.0


async def raw_request(
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> tuple[int, bytes]:
    """Send one request to ``127.0.0.1:port`` with ``target`` verbatim; (status, body).

    ``length=False`` sends no ``Content-Length`` (the body is framed by the caller).
    """
    async with asyncio.timeout(REQUEST_SECONDS):
        return await _exchange(port, method, target, body, headers, length)


async def _exchange(
    port: int,
    method: str,
    target: str,
    body: bytes,
    headers: dict[str, str] | None,
    length: bool,
) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if length and (body or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunk(payload)
    return status, payload


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def json_body(payload: bytes) -> Any:
    """The JSON of a response body, or None if it is not JSON (e.g. chunked)."""
    try:
        return json.loads(payload)
    except ValueError:
        return None
