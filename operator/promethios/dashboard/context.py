"""What the dashboard's handlers share: state, the session guard, CSRF, headers.

Nothing but the login page, the stylesheet, the script and ``/healthz`` answers without a
session: any other page redirects to the login page (303), any other POST or API request
gets 401. Every POST needs the session's CSRF token and, when the browser sends one, an
``Origin`` equal to the dashboard's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from ..api import wire
from ..ingest.ratelimit import RateLimiter
from .authz import REVIEW_EVERY, Authorizer
from .cache import FleetCache
from .model import AgentRow
from .sessions import COOKIE, Session, SessionStore
from .sessions import same_token as csrf_ok
from .viewer import Viewer
from .views import age

HERE = Path(__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = frozenset({"/login", "/healthz"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
    "Cache-Control": "no-store",
}


@dataclass
class Dashboard:
    """Everything the handlers share."""

    cache: FleetCache
    authz: Authorizer
    viewer: Viewer | None = None
    clock: Callable[[], float] = time.time
    sessions: SessionStore = field(default_factory=SessionStore)
    live_every: int = 5
    logins: RateLimiter = field(default_factory=lambda: RateLimiter(5.0, 20))
    env: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            auto_reload=False,
            undefined=jinja2.StrictUndefined,
        )
    )

    def render(self, template: str, **context: Any) -> str:
        """Render a template (autoescaped)."""
        return self.env.get_template(template).render(**context)


DASHBOARD = web.AppKey("dashboard", Dashboard)
SESSION = web.RequestKey("session", tuple)
"""The request's (session, viewer token), set by the session guard."""


def html(text: str, status: int = 200) -> web.Response:
    """An HTML response."""
    return web.Response(text=text, status=status, content_type="text/html")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; unauthenticated requests stop here."""
    dash = request.app[DASHBOARD]
    try:
        if request.path not in PUBLIC and not request.path.startswith("/static/"):
            await _require_session(request, dash)
        response = await handler(request)
    except web.HTTPException as error:
        for name, value in SECURITY_HEADERS.items():
            error.headers.setdefault(name, value)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _require_session(request: web.Request, dash: Dashboard) -> None:
    """Attach (session, token) to the request, or raise the unauthenticated answer."""
    now = dash.clock()
    found = dash.sessions.lookup(request.cookies.get(COOKIE), now)
    if found is not None and now - found[0].reviewed > REVIEW_EVERY:
        if await dash.authz.authenticate(found[1]) == found[0].identity:
            found[0].reviewed = now
        else:  # the token was revoked or expired: the session ends with it
            dash.sessions.end(request.cookies.get(COOKIE))
            found = None
    if found is not None:
        request[SESSION] = found
        return
    if request.path == wire.PATH_SUMMARY:
        return  # may still present a bearer token (see summary())
    if request.method == "GET" and not request.headers.get("X-Live"):
        target = request.path_qs if request.path != "/" else "/"
        raise web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")
    raise web.HTTPUnauthorized(text="sign in first", content_type="text/plain")


def session_of(request: web.Request) -> tuple[Session, str]:
    session, token = request[SESSION]
    assert isinstance(session, Session) and isinstance(token, str)
    return session, token


def common(request: web.Request, page: str) -> dict[str, Any]:
    session, _ = session_of(request)
    now = request.app[DASHBOARD].clock()
    return {
        "viewer": session.identity.username,
        "csrf": session.csrf,
        "page": page,
        "ago": lambda t: age(now - t) if t else "never",
    }


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def checked_form(request: web.Request, expected_csrf: str) -> dict[str, str]:
    """The POSTed form, after the CSRF and Origin checks (403 otherwise)."""
    form = await request.post()
    if not same_origin(request) or not csrf_ok(expected_csrf, str(form.get("csrf") or "")):
        raise web.HTTPForbidden(
            text="CSRF check failed: reload the page", content_type="text/plain"
        )
    return {key: str(value) for key, value in form.items()}


async def visible_agent(request: web.Request) -> AgentRow:
    """The agent of the path if the viewer may see it; 404 alike for absent and hidden."""
    dash = request.app[DASHBOARD]
    session, _ = session_of(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    row = dash.cache.agents.get(f"{namespace}/{name}")
    if row is None or not await dash.authz.visible(session.identity, [namespace]):
        raise web.HTTPNotFound(
            text=dash.render(
                "error.html",
                **common(request, "fleet"),
                status="Not found",
                message=f"No GovernedAgent {namespace}/{name} that you may see.",
            ),
            content_type="text/html",
        )
    return row
