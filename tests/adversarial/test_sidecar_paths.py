"""Escape 3: the agent uses the held provider credential on a path the proxy should not serve.

The proxy forwards only an explicit allowlist of provider paths per dialect; any
other path, and any path with dot segments, percent-encodings, backslashes or
empty segments, is refused before anything reaches the provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_http import raw_request
from sidecar_fakes import SidecarFactory, Upstream

from promethios.sidecar.app import Sidecar

#: The allowlist as the issue states it, written independently of the implementation.
CALLS = {
    "openai": {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"},
    "anthropic": {"/v1/messages"},
    "custom": {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"},
}
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


def allowed(provider: str, method: str, path: str) -> bool:
    """True if the issue's allowlist lets ``method path`` through for this provider."""
    if method == "POST":
        return path in CALLS[provider]
    if method != "GET":
        return False
    if path == "/v1/models":
        return True
    prefix = "/v1/models/"
    return path.startswith(prefix) and MODEL_ID.fullmatch(path[len(prefix) :]) is not None


async def send(sidecar: Sidecar, method: str, path: str) -> tuple[int, bytes]:
    """``method path`` to the agent-facing port, verbatim (a chat body unless GET)."""
    return await raw_request(sidecar.agent_port, method, path, b"" if method == "GET" else BODY)


ESCAPES = [
    ("GET", "/v1/models/../files/file-1/content"),
    ("GET", "/v1/models/..%2Ffiles%2Ffile-1%2Fcontent"),
    ("GET", "/v1/models/..%2ffiles"),
    ("GET", "/v1/models/%2e%2e/files/file-1/content"),
    ("GET", "/v1/models/%2E%2E/files"),
    ("GET", "/v1/models/.%2e/files"),
    ("GET", "/v1/models/..%5Cfiles"),
    ("GET", "/v1/models/..\\files"),
    ("GET", "/v1/models/./gpt-4o"),
    ("GET", "/v1/models/.."),
    ("GET", "/v1/models/."),
    ("GET", "/v1//models"),
    ("GET", "/v1/models/"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/file-1/content"),
    ("POST", "/v1/files"),
    ("POST", "/v1/chat/completions/../../files"),
    ("POST", "/v1/chat/completions/."),
    ("POST", "/v1/chat/%63ompletions"),
    ("POST", "/v1/chat//completions"),
    ("POST", "/v1/fine_tuning/jobs"),
    ("DELETE", "/v1/models/gpt-4o"),
    ("POST", "/v1/models"),
    ("POST", "/v1/messages"),  # an Anthropic path on an OpenAI provider
]


@pytest.mark.parametrize(("method", "path"), ESCAPES)
async def test_path_escape_refused_before_upstream(
    make_sidecar: SidecarFactory, upstream: Upstream, method: str, path: str
) -> None:
    sidecar = await make_sidecar()
    status, _ = await send(sidecar, method, path)
    assert 400 <= status < 500, f"{method} {path} answered {status}"
    assert upstream.requests == [], f"{method} {path} reached the provider"


@pytest.mark.parametrize(
    ("provider", "method", "path"),
    [
        ("openai", "POST", "/v1/chat/completions"),
        ("openai", "GET", "/v1/models"),
        ("openai", "GET", "/v1/models/ft:gpt-4o-mini:org:name:abc123"),
        ("anthropic", "POST", "/v1/messages"),
        ("anthropic", "GET", "/v1/models/claude-3-5-sonnet-20241022"),
        ("custom", "POST", "/v1/embeddings"),
    ],
)
async def test_allowed_paths_still_forwarded(
    make_sidecar: SidecarFactory, upstream: Upstream, provider: str, method: str, path: str
) -> None:
    sidecar = await make_sidecar(provider={"type": provider})
    status, _ = await send(sidecar, method, path)
    assert status == 200
    assert [p for p, _, _ in upstream.requests] == [path]


SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "v1",
            "models",
            "chat",
            "completions",
            "embeddings",
            "messages",
            "files",
            "gpt-4o",
            "content",
            ".",
            "..",
            "",
            "%2e",
            "%2E%2e",
            "%2f",
            "%2F",
            "%5c",
            "%5C",
            "\\",
            "..\\",
            ".%2e",
            "%00",
            ";",
            "x@y",
        ]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"),
        min_size=1,
        max_size=12,
    ),
)
PATHS = st.lists(SEGMENTS, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts))
PREFIXED = st.lists(SEGMENTS, min_size=0, max_size=4).map(
    lambda parts: "/v1/models/" + "/".join(parts)
)


@pytest.fixture
def sidecar_for(make_sidecar: SidecarFactory) -> Callable[[str], Awaitable[Sidecar]]:
    """One sidecar per provider type for a whole property test (not one per example)."""
    cache: dict[str, Sidecar] = {}

    async def get(provider: str) -> Sidecar:
        if provider not in cache:
            cache[provider] = await make_sidecar(provider={"type": provider})
        return cache[provider]

    return get


@pytest.mark.parametrize("provider", ["openai", "anthropic", "custom"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.one_of(PATHS, PREFIXED),
)
async def test_any_path_off_the_allowlist_never_reaches_upstream(
    sidecar_for: Callable[[str], Awaitable[Sidecar]],
    upstream: Upstream,
    provider: str,
    method: str,
    path: str,
) -> None:
    """Property: off the allowlist -> a 4xx and nothing at the provider; on it -> forwarded."""
    sidecar = await sidecar_for(provider)
    upstream.requests.clear()
    status, _ = await send(sidecar, method, path)
    if allowed(provider, method, path):
        assert [p for p, _, _ in upstream.requests] == [path]
    else:
        assert 400 <= status < 500, f"{method} {path} answered {status}"
        assert upstream.requests == [], f"{method} {path} reached the provider"


async def test_agent_cannot_steer_the_credential_with_headers(
    make_sidecar: SidecarFactory, upstream: Upstream
) -> None:
    """Organization/project selectors, proxies' routing headers, cookies: never forwarded."""
    sidecar = await make_sidecar()
    steering = {
        "OpenAI-Organization": "org-someone-else",
        "OpenAI-Project": "proj-someone-else",
        "X-Forwarded-Host": "files.internal",
        "X-Original-URL": "/v1/files",
        "Cookie": "session=1",
        "Authorization": "Bearer agent-own",
    }
    status, _ = await raw_request(
        sidecar.agent_port,
        "POST",
        "/v1/chat/completions",
        BODY,
        {**steering, "Content-Type": "application/json", "OpenAI-Beta": "assistants=v2"},
    )
    assert status == 200
    [(_, forwarded, _)] = upstream.requests
    names = {name.lower() for name in forwarded}
    assert not names & {name.lower() for name in steering if name != "Authorization"}
    assert forwarded["Authorization"] == "Bearer cred-secret-123"
    assert forwarded.get("OpenAI-Beta") == "assistants=v2"  # SDK feature flags still pass
