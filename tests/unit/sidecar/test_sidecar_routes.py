"""The proxy's allowlist of provider routes (pure)."""

from __future__ import annotations

import pytest

from promethios.sidecar.proxy import upstream_url
from promethios.sidecar.routes import Route, RouteRefusal, dialect_of, resolve


@pytest.mark.parametrize(
    ("provider", "dialect"),
    [("openai", "openai"), ("custom", "openai"), ("anthropic", "anthropic")],
)
def test_dialect_of_provider(provider: str, dialect: str) -> None:
    assert dialect_of(provider) == dialect


def test_calls_are_per_dialect() -> None:
    assert resolve("POST", "/v1/chat/completions", "openai") == Route("/v1/chat/completions", True)
    assert resolve("POST", "/v1/messages", "anthropic") == Route("/v1/messages", True)
    refused = resolve("POST", "/v1/messages", "openai")
    assert isinstance(refused, RouteRefusal) and refused.status == 404
    assert refused.code == "path_not_allowed" and "/v1/messages" in refused.message


def test_models_listing_and_one_model() -> None:
    assert resolve("GET", "/v1/models", "anthropic") == Route("/v1/models", False)
    assert resolve("GET", "/v1/models/gpt-4o", "openai") == Route("/v1/models/gpt-4o", False)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/chat/completions", 405),
        ("POST", "/v1/models", 405),
        ("GET", "/v1/models/a/b", 404),
        ("GET", "/v1/models/..", 400),
        ("GET", "/v1/models/%2e%2e", 400),
        ("GET", "/v1//models", 400),
        ("GET", "/v1/models/", 400),
        ("GET", "/v1/models/a\\b", 400),
    ],
)
def test_refusals_name_the_reason(method: str, path: str, status: int) -> None:
    refused = resolve(method, path, "openai")
    assert isinstance(refused, RouteRefusal) and refused.status == status
    assert refused.message


def test_upstream_url_joins_v1_once() -> None:
    assert upstream_url("https://api.openai.com/v1", "/v1/models") == (
        "https://api.openai.com/v1/models"
    )
    assert upstream_url("https://api.anthropic.com", "/v1/messages") == (
        "https://api.anthropic.com/v1/messages"
    )
