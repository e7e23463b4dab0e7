"""Which agent requests the model proxy forwards: an explicit allowlist per dialect.

The proxy holds the provider credential, so every path it forwards is a use of
that credential. Only these are forwarded (the agent's SDK never needs more):

- OpenAI dialect (provider ``openai`` and ``custom``, which is OpenAI-compatible):
  ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``;
- Anthropic dialect (provider ``anthropic``): ``POST /v1/messages``;
- both: ``GET /v1/models`` and ``GET /v1/models/{id}``, ``id`` one safe segment.

The decision is made on the path exactly as the agent sent it (still
percent-encoded): a path with a dot segment, a percent sign, a backslash, an
empty segment or any character outside ``[A-Za-z0-9._:-]`` is malformed and
refused, so nothing the HTTP stack or the upstream URL parser might normalise
(``..``, ``%2f``, ``%2e``, ``\\``, ``//``) ever reaches the provider. The
upstream path is the allowlisted one, never the agent's string. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from promethios.api.common import ProviderType

Dialect = Literal["openai", "anthropic"]

OPENAI_CALLS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
ANTHROPIC_CALLS = ("/v1/messages",)
MODELS = "/v1/models"

#: One path segment: starts with a letter or digit, so never ``.`` or ``..``.
SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,255}")
WELL_FORMED = re.compile(r"(?:/[A-Za-z0-9._:-]+)+")


@dataclass(frozen=True)
class Route:
    """An allowed request: the path to forward, and whether it is a model call."""

    path: str
    call: bool  # a model call (policy applies) rather than a model listing


@dataclass(frozen=True)
class RouteRefusal:
    """Why a request is not forwarded: an HTTP status, an error code and a message."""

    status: int
    code: str
    message: str


def dialect_of(provider_type: str) -> Dialect:
    """The wire dialect a provider speaks (``custom`` is OpenAI-compatible)."""
    return "anthropic" if provider_type == ProviderType.ANTHROPIC else "openai"


def calls_of(dialect: Dialect) -> tuple[str, ...]:
    """The model-call paths of a dialect."""
    return ANTHROPIC_CALLS if dialect == "anthropic" else OPENAI_CALLS


def resolve(method: str, raw_path: str, dialect: Dialect) -> Route | RouteRefusal:
    """The route for ``method raw_path`` (path still percent-encoded, no query), or why not."""
    if not _well_formed(raw_path):
        return RouteRefusal(
            400,
            "invalid_path",
            "path must be plain segments of [A-Za-z0-9._:-]: no dot segments, "
            "percent-encodings, backslashes or empty segments",
        )
    if raw_path in calls_of(dialect):
        return Route(raw_path, True) if method == "POST" else _method_refusal(method, "POST")
    if raw_path == MODELS or _model_id(raw_path) is not None:
        return Route(raw_path, False) if method == "GET" else _method_refusal(method, "GET")
    return RouteRefusal(
        404,
        "path_not_allowed",
        f"the governance proxy does not forward {raw_path} for the {dialect} dialect",
    )


def _well_formed(raw_path: str) -> bool:
    if WELL_FORMED.fullmatch(raw_path) is None:
        return False
    return all(segment not in (".", "..") for segment in raw_path.split("/")[1:])


def _model_id(raw_path: str) -> str | None:
    prefix = MODELS + "/"
    if not raw_path.startswith(prefix):
        return None
    candidate = raw_path[len(prefix) :]
    return candidate if SAFE_SEGMENT.fullmatch(candidate) else None


def _method_refusal(method: str, allowed: str) -> RouteRefusal:
    return RouteRefusal(405, "method_not_allowed", f"{method} is not allowed here; use {allowed}")
