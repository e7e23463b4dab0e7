"""Agent API keys: an in-memory index from the SHA-256 of a key to its agent.

The Secrets it is fed from follow the contract in :mod:`promethios.api.apikey` (the
operator writes them): only ``apiKeySha256`` and ``previousApiKeySha256`` are read, never
``apiKey``. A labelled Secret grants a key only if it is the one the operator owns for
that agent: named ``<agent>-api-key`` and controlled (ownerReference ``controller: true``)
by the GovernedAgent ``<agent>``; the owner's uid is kept with the key, and a request
authenticates only if it matches the agent the ingest knows (a Secret left behind by a
deleted agent of the same name grants nothing).

Authentication is one SHA-256 of the presented key and one dict lookup; the stored
digest comes from the index itself, and ``hmac.compare_digest`` re-checks it so the
comparison is constant-time. Keys are never logged or echoed.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..api.apikey import (
    ANNOTATION_PREVIOUS_EXPIRES,
    ANNOTATION_PREVIOUS_SCOPE,
    DATA_PREVIOUS_SHA256,
    DATA_SHA256,
    SCOPE_VIOLATIONS,
    decode_data,
    secret_name,
    sha256_hex,
)
from ..api.common import GROUP
from ..api.conditions import parse_time
from ..api.governedagent import GOVERNED_AGENT
from ..api.metadata import ANNOTATION_IDENTITY, LABEL_AGENT

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """Who a key belongs to and until when it is valid (None: no expiry)."""

    agent_id: str
    governance_identity: str
    expires_at: float | None
    digest: str
    owner_uid: str | None = None
    """uid of the GovernedAgent owning the Secret; None only for keys added directly."""
    scope: str | None = None
    """``violations``: this key may only deliver violations (a quarantine's revoked key)."""


class AuthOutcome(Enum):
    """The result of checking a request's credentials."""

    OK = 200
    UNAUTHENTICATED = 401
    FORBIDDEN = 403


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome plus a safe message (never containing the key)."""

    outcome: AuthOutcome
    message: str
    entry: KeyEntry | None = None


def _digest(data: Mapping[str, Any], key: str) -> str | None:
    """A hex digest from a Secret's ``data`` (normalised); None when absent or not hex."""
    text = decode_data(data, key)
    digest = text.strip().lower() if text is not None else None
    return digest if digest is not None and _HEX64.match(digest) else None


def entries_from_secret(secret: Mapping[str, Any]) -> list[KeyEntry]:
    """The key entries an api-key Secret (as a plain dict) grants, per the contract."""
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    name, namespace = labels.get(LABEL_AGENT), metadata.get("namespace")
    identity = annotations.get(ANNOTATION_IDENTITY)
    if not (name and namespace and identity) or metadata.get("name") != secret_name(name):
        return []
    owner = controlling_agent(metadata.get("ownerReferences"), name)
    if owner is None:
        return []
    agent_id = f"{namespace}/{name}"
    data = secret.get("data") or {}
    entries = []
    current = _digest(data, DATA_SHA256)
    if current:
        entries.append(KeyEntry(agent_id, identity, None, current, owner))
    previous = _digest(data, DATA_PREVIOUS_SHA256)
    expires = parse_time(annotations.get(ANNOTATION_PREVIOUS_EXPIRES))
    if previous and expires is not None and previous != current:
        scope = annotations.get(ANNOTATION_PREVIOUS_SCOPE)
        entries.append(KeyEntry(agent_id, identity, expires.timestamp(), previous, owner, scope))
    return entries


def controlling_agent(owners: Any, agent_name: str) -> str | None:
    """The uid of the GovernedAgent ``agent_name`` controlling an object, if it is one."""
    for owner in owners if isinstance(owners, list) else []:
        if (
            isinstance(owner, Mapping)
            and owner.get("controller") is True
            and owner.get("kind") == GOVERNED_AGENT.kind
            and str(owner.get("apiVersion", "")).split("/")[0] == GROUP
            and owner.get("name") == agent_name
            and isinstance(owner.get("uid"), str)
        ):
            return str(owner["uid"])
    return None


class KeyStore:
    """The index ``sha256 hex -> KeyEntry``, replaced per Secret as watches report changes.

    Reads are lock-free dict lookups (the event loop); writes come from the watch and
    swap whole entries under a lock, so a reader never sees a half-updated Secret.
    """

    def __init__(self) -> None:
        self._index: dict[str, KeyEntry] = {}
        self._by_secret: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._index)

    def put(self, secret_uid: str, entries: list[KeyEntry]) -> None:
        """Replace the entries that one Secret grants (empty list removes them)."""
        with self._lock:
            for digest in self._by_secret.pop(secret_uid, []):
                self._index.pop(digest, None)
            for entry in entries:
                self._index[entry.digest] = entry
            if entries:
                self._by_secret[secret_uid] = [entry.digest for entry in entries]

    def put_secret(self, secret: Mapping[str, Any]) -> None:
        """Index a Secret dict under its uid (or namespace/name)."""
        self.put(_secret_id(secret), entries_from_secret(secret))

    def remove_secret(self, secret: Mapping[str, Any]) -> None:
        """Forget a deleted Secret's keys."""
        self.put(_secret_id(secret), [])

    def add_key(
        self, key: str, agent_id: str, identity: str, expires_at: float | None = None
    ) -> None:
        """Index a plaintext key directly (tests and benchmarks; no Secret involved)."""
        digest = sha256_hex(key)
        with self._lock:
            self._index[digest] = KeyEntry(agent_id, identity, expires_at, digest)

    def replace_scope(self, namespace: str | None, secrets: list[Mapping[str, Any]]) -> None:
        """Re-sync the keys of one namespace (None: all) from a full list of its Secrets."""
        with self._lock:
            stale = [
                uid
                for uid, digests in self._by_secret.items()
                if namespace is None
                or any(
                    self._index[d].agent_id.startswith(namespace + "/")
                    for d in digests
                    if d in self._index
                )
            ]
        for uid in stale:
            self.put(uid, [])
        for secret in secrets:
            self.put_secret(secret)

    def authenticate(
        self,
        authorization: str | None,
        agent_id: str | None,
        identity: str | None,
        now: float,
        purpose: str = "reports",
    ) -> AuthResult:
        """Check ``Authorization: Bearer <key>`` plus the agent and identity headers.

        ``purpose`` is ``violations`` for violation reports, which a quarantine's revoked
        key may still deliver; anything else needs a key without a narrower scope.
        """
        key = _bearer(authorization)
        if key is None:
            return AuthResult(AuthOutcome.UNAUTHENTICATED, "missing bearer API key")
        digest = sha256_hex(key)
        entry = self._index.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return AuthResult(AuthOutcome.UNAUTHENTICATED, "unknown API key")
        if entry.expires_at is not None and now >= entry.expires_at:
            return AuthResult(AuthOutcome.UNAUTHENTICATED, "API key expired (rotated out)")
        if entry.scope == SCOPE_VIOLATIONS and purpose != SCOPE_VIOLATIONS:
            return AuthResult(
                AuthOutcome.UNAUTHENTICATED,
                "API key revoked by a quarantine: it may only deliver violations",
            )
        if agent_id != entry.agent_id:
            return AuthResult(AuthOutcome.FORBIDDEN, "API key does not belong to X-Agent-ID")
        if identity != entry.governance_identity:
            return AuthResult(AuthOutcome.FORBIDDEN, "X-Governance-ID does not match the agent")
        return AuthResult(AuthOutcome.OK, "ok", entry)


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None otherwise."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


def _secret_id(secret: Mapping[str, Any]) -> str:
    metadata = secret.get("metadata") or {}
    uid = metadata.get("uid")
    if isinstance(uid, str) and uid:
        return uid
    return f"{metadata.get('namespace')}/{metadata.get('name')}"
