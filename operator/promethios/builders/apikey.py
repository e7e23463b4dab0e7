"""The per-agent ingest API key: its Secret and the rotation state machine.

The Secret follows the contract in :mod:`promethios.api.apikey` (which the ingest API
reads): ``apiKey`` holds the key, ``apiKeySha256`` its hex SHA-256, and during a rotation
``previousApiKeySha256`` plus the annotation ``promethios.ai/previous-key-expires-at``.
The key is generated once and read back on every reconcile; only a rotation or a
quarantine replaces it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.agent import Agent
from ..api.apikey import (
    ANNOTATION_PREVIOUS_EXPIRES,
    ANNOTATION_PREVIOUS_SCOPE,
    ANNOTATION_REVOKED_BREACH,
    ANNOTATION_ROTATION,
    COMPONENT,
    DATA_KEY,
    DATA_PREVIOUS_SHA256,
    DATA_SHA256,
    SCOPE_VIOLATIONS,
    decode_data,
    sha256_hex,
)
from ..api.conditions import format_time, parse_time
from ..api.metadata import ANNOTATION_IDENTITY
from .meta import ChildNames, Manifest, object_meta, stamp_applied_hash


def generate_api_key() -> str:
    """A fresh 256-bit key, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyState:
    """What the Secret should hold after this reconcile (the key stays out of reprs)."""

    api_key: str = field(repr=False)
    rotation: int
    previous_sha256: str | None = None
    previous_expires_at: datetime | None = None
    revoked_breach: int | None = None
    #: What the previous key may still do (None: everything; see the api.apikey contract).
    previous_scope: str | None = None
    #: (reason, message) for a Normal Event; never contains the key.
    event: tuple[str, str] | None = None

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the current key."""
        return sha256_hex(self.api_key)


@dataclass(frozen=True)
class _LiveKey:
    """The key-related facts read back from the existing Secret."""

    api_key: str | None
    rotation: int | None
    previous_sha256: str | None
    previous_expires_at: datetime | None
    revoked_breach: int | None
    previous_scope: str | None = None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def read_live_key(secret: Mapping[str, Any] | None) -> _LiveKey:
    """Extract the key facts from a live Secret (None when there is no Secret yet)."""
    if not secret:
        return _LiveKey(None, None, None, None, None)
    metadata = secret.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    data = secret.get("data") or {}
    return _LiveKey(
        api_key=decode_data(data, DATA_KEY) or None,
        rotation=_int_or_none(annotations.get(ANNOTATION_ROTATION)),
        previous_sha256=decode_data(data, DATA_PREVIOUS_SHA256),
        previous_expires_at=parse_time(annotations.get(ANNOTATION_PREVIOUS_EXPIRES)),
        revoked_breach=_int_or_none(annotations.get(ANNOTATION_REVOKED_BREACH)),
        previous_scope=annotations.get(ANNOTATION_PREVIOUS_SCOPE),
    )


def plan_api_key(
    agent: Agent,
    live_secret: Mapping[str, Any] | None,
    now: datetime,
    *,
    revoke_for_breach: int | None = None,
    new_key: Callable[[], str] = generate_api_key,
) -> KeyState:
    """Decide the key for this reconcile: keep, create, rotate, revoke, or expire the previous.

    - no Secret (or no key in it): create a key for the current rotation;
    - quarantined for a breach not yet revoked: a new key and *no* previous key, so the
      old key stops working at once;
    - spec.apiKey.rotation above the Secret's: a new key; the old key's hash stays
      valid for spec.apiKey.gracePeriodSeconds;
    - otherwise keep the key, dropping the previous hash once it has expired.
    """
    live = read_live_key(live_secret)
    wanted = agent.spec.api_key.rotation
    if live.api_key is None:
        return KeyState(new_key(), wanted, revoked_breach=revoke_for_breach)
    applied = live.rotation if live.rotation is not None else wanted
    if revoke_for_breach is not None and live.revoked_breach != revoke_for_breach:
        return _revoked(
            agent, live.api_key, max(applied, wanted), revoke_for_breach, now, new_key()
        )
    if wanted > applied:
        return _rotated(agent, live, wanted, now, new_key())
    previous, expires = live.previous_sha256, live.previous_expires_at
    scope = live.previous_scope
    if previous is None or expires is None or expires <= now:
        previous, expires, scope = None, None, None
    return KeyState(
        live.api_key, applied, previous, expires, live.revoked_breach, previous_scope=scope
    )


def _revoked(
    agent: Agent, old_key: str, rotation: int, breach: int, now: datetime, key: str
) -> KeyState:
    """A quarantine: a new key now; the old one delivers violations only, for the grace."""
    grace = agent.spec.api_key.grace_period_seconds
    event = ("ApiKeyRevoked", f"quarantine of breach {breach} revoked the key")
    if grace == 0:
        return KeyState(key, rotation, revoked_breach=breach, event=event)
    expires = now.replace(microsecond=0) + timedelta(seconds=grace)
    return KeyState(
        key,
        rotation,
        sha256_hex(old_key),
        expires,
        revoked_breach=breach,
        previous_scope=SCOPE_VIOLATIONS,
        event=event,
    )


def _rotated(agent: Agent, live: _LiveKey, rotation: int, now: datetime, key: str) -> KeyState:
    """A rotation: the new key now, the previous one accepted for the grace period."""
    assert live.api_key is not None
    grace = agent.spec.api_key.grace_period_seconds
    message = f"rotation {rotation}: new key issued; previous key valid for {grace}s"
    if grace == 0:
        return KeyState(
            key, rotation, revoked_breach=live.revoked_breach, event=("ApiKeyRotated", message)
        )
    # Whole seconds, because the annotation has second precision.
    expires = now.replace(microsecond=0) + timedelta(seconds=grace)
    return KeyState(
        key,
        rotation,
        sha256_hex(live.api_key),
        expires,
        revoked_breach=live.revoked_breach,
        event=("ApiKeyRotated", message),
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build_api_key_secret(agent: Agent, state: KeyState) -> Manifest:
    """The ``<name>-api-key`` Secret, exactly as the ingest contract specifies."""
    annotations = {
        ANNOTATION_IDENTITY: agent.governance_identity,
        ANNOTATION_ROTATION: str(state.rotation),
    }
    data = {DATA_KEY: _b64(state.api_key), DATA_SHA256: _b64(state.sha256)}
    if state.previous_sha256 and state.previous_expires_at:
        data[DATA_PREVIOUS_SHA256] = _b64(state.previous_sha256)
        annotations[ANNOTATION_PREVIOUS_EXPIRES] = format_time(state.previous_expires_at)
        if state.previous_scope is not None:
            annotations[ANNOTATION_PREVIOUS_SCOPE] = state.previous_scope
    if state.revoked_breach is not None:
        annotations[ANNOTATION_REVOKED_BREACH] = str(state.revoked_breach)
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(
            agent, ChildNames.of(agent.name).secret, COMPONENT, annotations=annotations
        ),
        "type": "Opaque",
        "data": data,
    }
    return stamp_applied_hash(manifest)
