"""Reading an ingest request: the whole body within its size limit, JSON into a wire model
(400 when it is not JSON, 422 naming each offending field by its wire path), the
Idempotency-Key header, the summary's range parameter; and :class:`ApiError`, the one
error every handler raises and the middleware renders as an ErrorBody.
"""

from __future__ import annotations

import re
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..api import wire

Model = TypeVar("Model", bound=BaseModel)


_RANGE = re.compile(r"^([0-9]{1,7})([smhd]?)$")


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


_IDEMPOTENCY = re.compile(wire.IDEMPOTENCY_KEY_PATTERN)


class ApiError(Exception):
    """An error response with an :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.fields = fields or []
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The JSON response."""
        body = wire.ErrorBody(error=self.error, message=self.message, fields=self.fields)
        return web.Response(
            status=self.status,
            body=body.model_dump_json().encode(),
            content_type="application/json",
            headers=self.headers,
        )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, however its bytes arrive (one read returns only what is buffered);
    413 as soon as it passes ``limit``, before the rest is read."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    too_large = ApiError(413, "payload_too_large", f"body larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def parse_body(model: type[Model], body: bytes) -> Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        if any(item["type"] in ("json_invalid", "json_type") for item in errors):
            raise ApiError(400, "invalid_json", "body is not valid JSON") from None
        fields = [
            {"field": field_path(item["loc"]), "message": item["msg"]} for item in errors[:20]
        ]
        names = ", ".join(f["field"] for f in fields)
        raise ApiError(422, "validation_failed", f"invalid field(s): {names}", fields) from None


def idempotency_key(request: web.Request, body_key: str | None) -> str | None:
    header = request.headers.get(wire.HEADER_IDEMPOTENCY_KEY)
    if header is not None and not _IDEMPOTENCY.match(header):
        raise ApiError(
            422,
            "validation_failed",
            "invalid Idempotency-Key header",
            [
                {
                    "field": "header.Idempotency-Key",
                    "message": "must match " + wire.IDEMPOTENCY_KEY_PATTERN,
                }
            ],
        )
    return body_key or header


def parse_range(value: str, maximum: float) -> float:
    """``90s``, ``15m``, ``1h``, ``7d`` or plain seconds, within (0, maximum]."""
    match = _RANGE.match(value.strip())
    if not match:
        raise ApiError(
            422,
            "validation_failed",
            "invalid range",
            [{"field": "query.range", "message": "expected e.g. 15m, 1h, 1d or seconds"}],
        )
    seconds = float(int(match.group(1)) * _UNITS[match.group(2)])
    if not 0 < seconds <= maximum:
        raise ApiError(
            422,
            "validation_failed",
            "range out of bounds",
            [{"field": "query.range", "message": f"must be within 1s and {maximum:g}s"}],
        )
    return seconds
