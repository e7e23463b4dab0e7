"""A raw HTTP/1.1 client for attacks: sends the request line byte for byte.

Client libraries normalise what an attacker would not (``..`` segments,
percent-encodings, backslashes), so the attacks are written to the socket as is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def raw_request(
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Send one request to ``127.0.0.1:port`` with ``target`` verbatim; (status, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, payload


def json_body(payload: bytes) -> Any:
    """The JSON of a response body, or None if it is not JSON (e.g. chunked)."""
    try:
        return json.loads(payload)
    except ValueError:
        return None
