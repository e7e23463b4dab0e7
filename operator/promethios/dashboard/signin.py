"""Signing in with a Kubernetes token (TokenReview) and out.

The login form has no session yet: its CSRF token is double-submitted (a random value in a
``SameSite=Strict`` cookie and in the form). Sign-ins are rate-limited process-wide (each
is a TokenReview). ``next`` is followed only to a local path.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import web

from .context import DASHBOARD, checked_form, html, same_origin, session_of
from .sessions import COOKIE, LOGIN_COOKIE, TokenRefused, check_token
from .sessions import same_token as csrf_ok

log = logging.getLogger(__name__)
_LOCAL_PATH = re.compile(r"/[A-Za-z0-9/_.~%?=&+-]*")


def _https(request: web.Request) -> bool:
    """Mark cookies Secure over https, directly or behind a TLS-terminating Ingress (the
    header can only add the attribute, never remove it)."""
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"


def _safe_next(value: str | None) -> str:
    """Only a local path of plain characters (no scheme, host, ``//``, backslash or
    whitespace, which browsers may fold into a host): no open redirect."""
    if value and _LOCAL_PATH.fullmatch(value) and not value.startswith("//"):
        return value
    return "/"


async def login_page(request: web.Request) -> web.Response:
    """The sign-in form (with its double-submit CSRF cookie)."""
    return _login(request, "", 200, request.query.get("next"))


def _login(request: web.Request, error: str, status: int, next_path: str | None) -> web.Response:
    dash = request.app[DASHBOARD]
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    text = dash.render(
        "login.html",
        viewer=None,
        page="login",
        error=error,
        login_csrf=token,
        next=_safe_next(next_path),
    )
    response = html(text, status)
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=_https(request), path="/"
    )
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Check the token with a TokenReview and start a session."""
    dash = request.app[DASHBOARD]
    form = await request.post()
    next_path = _safe_next(str(form.get("next") or "/"))
    if not same_origin(request) or not csrf_ok(
        request.cookies.get(LOGIN_COOKIE, ""), str(form.get("csrf") or "")
    ):
        return _login(request, "The sign-in form expired; try again.", 403, next_path)
    if dash.logins.take("login", time.monotonic()) is not None:
        return _login(request, "Too many sign-in attempts; wait a few seconds.", 429, next_path)
    try:
        token = check_token(str(form.get("token") or ""))
    except TokenRefused as error:
        return _login(request, str(error), 400, next_path)
    identity = await dash.authz.authenticate(token)
    if identity is None:
        return _login(request, "The API server did not accept this token.", 401, next_path)
    cookie, _ = dash.sessions.create(identity, token, dash.clock())
    log.info("dashboard: %s signed in", identity.username)
    response = web.Response(status=303, headers={"Location": next_path})
    response.set_cookie(
        COOKIE, cookie, httponly=True, samesite="Strict", secure=_https(request), path="/"
    )
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session."""
    session, _ = session_of(request)
    await checked_form(request, session.csrf)
    request.app[DASHBOARD].sessions.end(request.cookies.get(COOKIE))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response
