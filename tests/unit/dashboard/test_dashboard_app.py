"""The dashboard over HTTP (aiohttp test client): sign-in, what each viewer sees, CSRF,
the two actions, the summary API and the headers. Kubernetes answers come from fakes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from dashboard_fakes import (
    T0,
    FakeReviewer,
    FakeViewer,
    agent_object,
    bucket,
    policy_object,
    sink_object,
)

from promethios.dashboard.app import build_app
from promethios.dashboard.authz import Authorizer
from promethios.dashboard.cache import FleetCache
from promethios.dashboard.context import Dashboard
from promethios.dashboard.sessions import COOKIE

ALICE_TOKEN = "alice-token-0123456789"
BOB_TOKEN = "bob-token-0123456789"
NOW = T0 + 3600
Client = TestClient[Any, Any]


class Clock:
    now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reviewer() -> FakeReviewer:
    # alice sees team-a and may patch there; bob sees team-b only, read only
    return FakeReviewer(
        tokens={ALICE_TOKEN: "alice", BOB_TOKEN: "bob"},
        allowed={
            ("alice", "get", "governedagents", "team-a"),
            ("alice", "patch", "governedagents", "team-a"),
            ("alice", "get", "governancepolicies", "team-a"),
            ("alice", "get", "alertsinks", "team-a"),
            ("bob", "get", "governedagents", "team-b"),
        },
    )


@pytest.fixture
def dashboard(reviewer: FakeReviewer) -> Dashboard:
    cache = FleetCache()
    history = [bucket(NOW - 300, critical=1)]
    recent = [{"id": "v1", "type": "pii.email", "severity": "critical",
               "description": "leaked jane@example.com",
               "time": "2023-11-14T23:00:00Z"}]  # fmt: skip
    cache.apply("GovernedAgent", None, "SYNC", {"items": [
        agent_object("team-a", "alpha", action="Quarantined", breach=2, acknowledged=1,
                     history=history, recent=recent, sinks=("hook",), now=NOW),
        agent_object("team-a", "beta", now=NOW),
        agent_object("team-b", "gamma", now=NOW),
    ]})  # fmt: skip
    cache.apply("GovernancePolicy", None, "SYNC", {"items": [policy_object("team-a", "default")]})
    cache.apply("AlertSink", None, "SYNC", {"items": [sink_object("team-a", "hook", delivered=4)]})
    clock = Clock()
    return Dashboard(cache=cache, authz=Authorizer(reviewer, clock), viewer=FakeViewer(),
                     clock=clock)  # fmt: skip


@pytest.fixture
async def client(dashboard: Dashboard) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_app(dashboard))) as test_client:
        yield test_client


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:500]
    return found.group(1)


async def sign_in(client: Client, token: str) -> str:
    """Sign in through the form; the page after it."""
    page = await client.get("/login")
    form = {"token": token, "csrf": csrf_of(await page.text()), "next": "/"}
    response = await client.post("/login", data=form)
    assert response.status == 200, await response.text()
    return await response.text()


async def test_nothing_is_shown_before_signing_in(client: Client) -> None:
    for path in ("/", "/agents/team-a/alpha", "/policies", "/integrations"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login")
        page = await client.get(path)
        text = await page.text()
        assert "kubectl create token" in text
        assert not any(data in text for data in ("Quarantined", "beta", "pii.email", "default"))
    for path in ("/agents/team-a/alpha/acknowledge", "/agents/team-a/alpha/suspend", "/logout"):
        assert (await client.post(path, data={})).status == 401
    assert (await client.get("/agents/team-a/alpha/live", headers={"X-Live": "1"})).status == 401
    summary = await client.get("/api/v1/governance/summary")
    assert summary.status == 401 and (await summary.json())["error"] == "unauthenticated"
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/static/style.css")).status == 200


async def test_sign_in_needs_the_form_token_and_an_accepted_token(
    client: Client, reviewer: FakeReviewer
) -> None:
    page = await client.get("/login")
    csrf = csrf_of(await page.text())
    assert (await client.post("/login", data={"token": ALICE_TOKEN, "csrf": "x"})).status == 403
    wrong = await client.post("/login", data={"token": "nope", "csrf": csrf})
    assert wrong.status == 401 and "did not accept" in await wrong.text()
    assert COOKIE not in {c.key for c in client.session.cookie_jar}
    cross = await client.post(
        "/login", data={"token": ALICE_TOKEN, "csrf": csrf}, headers={"Origin": "https://evil"}
    )
    assert cross.status == 403
    response = await client.post(
        "/login", data={"token": ALICE_TOKEN, "csrf": csrf, "next": "//evil.example/"},
        allow_redirects=False,
    )  # fmt: skip
    assert response.status == 303 and response.headers["Location"] == "/"  # no open redirect
    from promethios.dashboard.signin import _safe_next

    for bad in ("https://evil", "//evil", "/\\evil", "/\t/evil", "/ /evil", "evil", ""):
        assert _safe_next(bad) == "/", bad
    assert _safe_next("/agents/team-a/alpha?x=1") == "/agents/team-a/alpha?x=1"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ALICE_TOKEN not in cookie


async def test_each_viewer_sees_only_their_namespaces(client: Client) -> None:
    text = await sign_in(client, ALICE_TOKEN)
    assert "team-a/alpha" in text and "team-a/beta" in text and "gamma" not in text
    assert text.index("team-a/alpha") < text.index("team-a/beta")  # quarantined first
    assert (await client.get("/agents/team-b/gamma")).status == 404
    assert (await client.get("/agents/team-a/nope")).status == 404  # same answer as hidden
    client.session.cookie_jar.clear()
    text = await sign_in(client, BOB_TOKEN)
    assert "team-b/gamma" in text and "alpha" not in text


async def test_agent_page_shows_state_without_pii_and_reads_as_the_viewer(
    client: Client, dashboard: Dashboard
) -> None:
    await sign_in(client, ALICE_TOKEN)
    page = await client.get("/agents/team-a/alpha")
    text = await page.text()
    assert page.status == 200
    assert "Quarantined" in text and "pii.email" in text and "leaked [hidden]" in text
    assert (
        "jane@example.com" not in text and "hooks.example" not in text and "secret-path" not in text
    )
    assert "Acknowledge breach #2" in text and "OPENAI_BASE_URL" in text
    assert "alice-token" not in text
    # The integration instructions, as `promethios instructions` prints them (HTML-escaped).
    assert "# Integrating `team-a/alpha`" in text
    assert "from openai import OpenAI" in text and "Breach **2** is in force" in text
    viewer = dashboard.viewer
    assert isinstance(viewer, FakeViewer) and set(viewer.tokens_seen) == {ALICE_TOKEN}
    live = await client.get("/agents/team-a/alpha/live", headers={"X-Live": "1"})
    assert live.status == 200 and "pii.email" in await live.text()


async def test_acknowledge_needs_csrf_patch_permission_and_the_current_breach(
    client: Client, dashboard: Dashboard, reviewer: FakeReviewer
) -> None:
    await sign_in(client, ALICE_TOKEN)
    csrf = csrf_of(await (await client.get("/agents/team-a/alpha")).text())
    viewer = dashboard.viewer
    assert isinstance(viewer, FakeViewer)
    url = "/agents/team-a/alpha/acknowledge"
    assert (await client.post(url, data={"breach": "2"})).status == 403  # no CSRF token
    assert (await client.post(url, data={"breach": "2", "csrf": "forged"})).status == 403
    stale = await client.post(url, data={"breach": "1", "csrf": csrf})
    assert stale.status == 409 and not viewer.patches
    done = await client.post(url, data={"breach": "2", "csrf": csrf}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"].endswith("?done=acknowledged")
    assert viewer.patches == [
        (ALICE_TOKEN, "team-a", "alpha", {"spec": {"governance": {"acknowledgedBreach": 2}}})
    ]
    suspend = await client.post(
        "/agents/team-a/beta/suspend", data={"suspend": "true", "csrf": csrf}, allow_redirects=False
    )
    assert suspend.status == 303
    assert viewer.patches[-1] == (ALICE_TOKEN, "team-a", "beta", {"spec": {"suspend": True}})
    reviewer.allowed.discard(("alice", "patch", "governedagents", "team-a"))
    dashboard.clock.now += 31  # type: ignore[attr-defined]
    refused = await client.post(
        "/agents/team-a/beta/suspend", data={"suspend": "false", "csrf": csrf}
    )
    assert refused.status == 403 and len(viewer.patches) == 2
    assert "Read only" in await (await client.get("/agents/team-a/beta")).text()


async def test_bob_cannot_act_and_the_api_server_has_the_last_word(
    client: Client, dashboard: Dashboard, reviewer: FakeReviewer
) -> None:
    await sign_in(client, BOB_TOKEN)
    text = await (await client.get("/agents/team-b/gamma")).text()
    assert "Read only" in text and "Suspend</button>" not in text
    csrf = csrf_of(text)
    response = await client.post(
        "/agents/team-b/gamma/suspend", data={"suspend": "true", "csrf": csrf}
    )
    assert response.status == 403
    reviewer.allowed.add(("bob", "patch", "governedagents", "team-b"))
    dashboard.clock.now += 31  # type: ignore[attr-defined]
    viewer = dashboard.viewer
    assert isinstance(viewer, FakeViewer)
    viewer.refuse = True  # the SAR says yes, the API server (e.g. admission) says no
    response = await client.post(
        "/agents/team-b/gamma/suspend", data={"suspend": "true", "csrf": csrf}
    )
    assert response.status == 403 and not viewer.patches


async def test_summary_api_with_a_kubernetes_token_is_filtered_and_exact(client: Client) -> None:
    response = await client.get(
        "/api/v1/governance/summary?range=1h", headers={"Authorization": f"Bearer {ALICE_TOKEN}"}
    )
    document = await response.json()
    assert response.status == 200
    assert [a["agentId"] for a in document["agents"]] == ["team-a/alpha", "team-a/beta"]
    assert document["fleet"]["violations"]["bySeverity"]["critical"] == 1
    bad = await client.get(
        "/api/v1/governance/summary?range=1y", headers={"Authorization": f"Bearer {ALICE_TOKEN}"}
    )
    assert bad.status == 422 and "range" in (await bad.json())["message"]
    wrong = await client.get(
        "/api/v1/governance/summary", headers={"Authorization": "Bearer not-a-token"}
    )
    assert wrong.status == 401


async def test_pages_carry_security_headers_and_sign_out_ends_the_session(
    client: Client, dashboard: Dashboard, reviewer: FakeReviewer
) -> None:
    text = await sign_in(client, ALICE_TOKEN)
    page = await client.get("/policies")
    assert "default" in await page.text() and "no-secrets" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    agent = await (await client.get("/agents/team-a/alpha")).text()
    for text in (agent, await page.text()):  # the CSP allows no inline style or script
        assert 'style="' not in text and "<script>" not in text
    sinks = await (await client.get("/integrations")).text()
    assert "team-a/hook" in sinks and "hooks.example" not in sinks
    # a revoked token ends the session at the next periodic re-review
    reviewer.tokens.pop(ALICE_TOKEN)
    dashboard.clock.now += 301  # type: ignore[attr-defined]
    gone = await client.get("/", allow_redirects=False)
    assert gone.status == 303
    reviewer.tokens[ALICE_TOKEN] = "alice"
    text = await sign_in(client, ALICE_TOKEN)
    out = await client.post("/logout", data={"csrf": csrf_of(text)}, allow_redirects=False)
    assert out.status == 303 and (await client.get("/", allow_redirects=False)).status == 303
