"""Dashboard sessions: who is logged in, their sealed token, CSRF tokens (pure).

The viewer's bearer token is never kept in clear: at login it is split into a one-time pad
(random bytes as long as the token) that goes to the browser inside the session cookie,
and the token XOR the pad, kept here. Neither half alone is the token; a request that
carries the cookie brings the pad back, and the token exists in clear only while that
request acts on the viewer's behalf (their Events, children, the two actions). The cookie
is ``HttpOnly`` and ``SameSite=Strict``; server-side sessions are looked up by a SHA-256
of the session id, so the store holds no cookie value either.

A session lasts :data:`SESSION_SECONDS` at most, never past the token's own ``exp`` (read
from a JWT's payload once a TokenReview has accepted it), and ends :data:`IDLE_SECONDS`
after the last request. Every POST carries the session's CSRF token; the login form, which
has no session yet, a random one double-submitted in a ``SameSite=Strict`` cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from ..kube.access import Identity

COOKIE = "promethios_session"
LOGIN_COOKIE = "promethios_login"
SESSION_SECONDS = 8 * 3600.0
IDLE_SECONDS = 3600.0
MAX_SESSIONS = 10_000
#: Longest token accepted: the pad must fit a cookie (4 KiB with its name and attributes).
MAX_TOKEN_BYTES = 2800
_ID_BYTES = 32


class TokenRefused(ValueError):
    """The presented token cannot make a session (the message says why; never the token)."""


def seal(token: str) -> tuple[bytes, bytes]:
    """(pad, sealed): ``sealed`` is the token XOR ``pad``, a fresh pad as long as the token."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    return pad, bytes(a ^ b for a, b in zip(raw, pad, strict=True))


def unseal(pad: bytes, sealed: bytes) -> str | None:
    """The token, or None when the pad does not fit."""
    if len(pad) != len(sealed):
        return None
    try:
        return bytes(a ^ b for a, b in zip(pad, sealed, strict=True)).decode()
    except UnicodeDecodeError:
        return None


def token_expiry(token: str) -> float | None:
    """A JWT's ``exp`` (epoch seconds), read without verifying: only a TokenReview-accepted
    token gets here, and the value can only shorten the session. None for other tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def check_token(token: str) -> str:
    """The token stripped (a pasted ``Bearer `` prefix too), or TokenRefused."""
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise TokenRefused("paste a token: kubectl create token <service-account> -n <namespace>")
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise TokenRefused(f"token longer than {MAX_TOKEN_BYTES} bytes")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise TokenRefused("a token has no spaces or control characters")
    return token


@dataclass
class Session:
    """One logged-in viewer."""

    identity: Identity
    csrf: str
    sealed: bytes
    created: float
    expires: float
    last_seen: float
    reviewed: float
    """When a TokenReview last accepted the token (re-checked every few minutes)."""


def _digest(session_id: bytes) -> str:
    return hashlib.sha256(session_id).hexdigest()


def _encode(session_id: bytes, pad: bytes) -> str:
    return base64.urlsafe_b64encode(session_id + pad).decode().rstrip("=")


def _decode(cookie: str) -> tuple[bytes, bytes] | None:
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    except (ValueError, binascii.Error):
        return None
    if len(raw) <= _ID_BYTES:
        return None
    return raw[:_ID_BYTES], raw[_ID_BYTES:]


class SessionStore:
    """Sessions by the digest of their id; the oldest go first beyond ``max_sessions``."""

    def __init__(
        self,
        max_sessions: int = MAX_SESSIONS,
        lifetime: float = SESSION_SECONDS,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max = max_sessions
        self._lifetime = lifetime
        self._idle = idle

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, identity: Identity, token: str, now: float) -> tuple[str, Session]:
        """A new session for an authenticated token: (cookie value, session)."""
        session_id = secrets.token_bytes(_ID_BYTES)
        pad, sealed = seal(token)
        expiry = token_expiry(token)
        expires = now + self._lifetime
        if expiry is not None:
            expires = min(expires, expiry)
        session = Session(identity, secrets.token_urlsafe(32), sealed, now, expires, now, now)
        self._sessions[_digest(session_id)] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return _encode(session_id, pad), session

    def lookup(self, cookie: str | None, now: float) -> tuple[Session, str] | None:
        """The live session of a cookie and the viewer's token; None if none (it is ended
        when expired or idle)."""
        decoded = _decode(cookie) if cookie else None
        if decoded is None:
            return None
        session_id, pad = decoded
        digest = _digest(session_id)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if now >= session.expires or now - session.last_seen > self._idle:
            del self._sessions[digest]
            return None
        token = unseal(pad, session.sealed)
        if token is None:
            return None
        session.last_seen = now
        return session, token

    def end(self, cookie: str | None) -> None:
        """Log out (nothing happens for an unknown cookie)."""
        decoded = _decode(cookie) if cookie else None
        if decoded is not None:
            self._sessions.pop(_digest(decoded[0]), None)


def same_token(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of CSRF tokens (False when absent)."""
    return bool(presented) and hmac.compare_digest(expected.encode(), str(presented).encode())
