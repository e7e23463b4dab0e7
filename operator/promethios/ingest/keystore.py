"""Agent API keys: an in-memory index from the SHA-256 of a key to its agent.

Secret contract (the operator writes it, the ingest API reads it)
-----------------------------------------------------------------
For every GovernedAgent ``<name>`` the operator writes a Secret ``<name>-api-key`` in
the agent's namespace with

- labels ``app.kubernetes.io/managed-by=promethios-operator``,
  ``promethios.ai/component=api-key`` and ``promethios.ai/agent=<name>``;
- annotation ``promethios.ai/governance-identity=<id>`` (the agent's governance identity);
- data key ``apiKey``: the current key (only the sidecar mounts it);
- data key ``apiKeySha256``: lowercase hex SHA-256 of the UTF-8 bytes of ``apiKey``;
- during a rotation, data key ``previousApiKeySha256`` (hex SHA-256 of the previous key)
  and annotation ``promethios.ai/previous-key-expires-at=<RFC3339>``; the previous key is
  accepted until then. Without the annotation the previous key is not accepted.

The ingest API lists/watches Secrets with the label selector
``app.kubernetes.io/managed-by=promethios-operator,promethios.ai/component=api-key`` and
reads only ``apiKeySha256``/``previousApiKeySha256`` (never ``apiKey``).

Authentication is one SHA-256 of the presented key and one dict lookup; the stored
digest comes from the index itself, and ``hmac.compare_digest`` re-checks it so the
comparison is constant-time. Keys are never logged or echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..api.conditions import parse_time

SECRET_SELECTOR = "app.kubernetes.io/managed-by=promethios-operator,promethios.ai/component=api-key"
LABEL_AGENT = "promethios.ai/agent"
ANNOTATION_IDENTITY = "promethios.ai/governance-identity"
ANNOTATION_PREVIOUS_EXPIRES = "promethios.ai/previous-key-expires-at"
DATA_KEY = "apiKey"
DATA_SHA256 = "apiKeySha256"
DATA_PREVIOUS_SHA256 = "previousApiKeySha256"
SECRET_SUFFIX = "-api-key"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """Who a key belongs to and until when it is valid (None: no expiry)."""

    agent_id: str
    governance_identity: str
    expires_at: float | None
    digest: str


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


def sha256_hex(key: str) -> str:
    """Lowercase hex SHA-256 of a key's UTF-8 bytes (what ``apiKeySha256`` holds)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _data_value(data: Mapping[str, Any], key: str) -> str | None:
    """Decode one base64 ``data`` value of a Secret as text; None when absent or bad."""
    raw = data.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("ascii").strip().lower()
    except (ValueError, UnicodeDecodeError):
        return None


def entries_from_secret(secret: Mapping[str, Any]) -> list[KeyEntry]:
    """The key entries an api-key Secret (as a plain dict) grants, per the contract."""
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    name, namespace = labels.get(LABEL_AGENT), metadata.get("namespace")
    identity = annotations.get(ANNOTATION_IDENTITY)
    if not (name and namespace and identity):
        return []
    agent_id = f"{namespace}/{name}"
    data = secret.get("data") or {}
    entries = []
    current = _data_value(data, DATA_SHA256)
    if current and _HEX64.match(current):
        entries.append(KeyEntry(agent_id, identity, None, current))
    previous = _data_value(data, DATA_PREVIOUS_SHA256)
    expires = parse_time(annotations.get(ANNOTATION_PREVIOUS_EXPIRES))
    if previous and _HEX64.match(previous) and expires is not None and previous != current:
        entries.append(KeyEntry(agent_id, identity, expires.timestamp(), previous))
    return entries


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

    def authenticate(
        self, authorization: str | None, agent_id: str | None, identity: str | None, now: float
    ) -> AuthResult:
        """Check ``Authorization: Bearer <key>`` plus the agent and identity headers."""
        key = _bearer(authorization)
        if key is None:
            return AuthResult(AuthOutcome.UNAUTHENTICATED, "missing bearer API key")
        digest = sha256_hex(key)
        entry = self._index.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return AuthResult(AuthOutcome.UNAUTHENTICATED, "unknown API key")
        if entry.expires_at is not None and now >= entry.expires_at:
            return AuthResult(AuthOutcome.UNAUTHENTICATED, "API key expired (rotated out)")
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


def replace_scope(store: KeyStore, namespace: str | None, secrets: list[Mapping[str, Any]]) -> None:
    """Re-sync the keys of one namespace (None: all) from a full list of its Secrets."""
    with store._lock:
        stale = [
            uid
            for uid, digests in store._by_secret.items()
            if namespace is None
            or any(
                store._index[d].agent_id.startswith(namespace + "/")
                for d in digests
                if d in store._index
            )
        ]
    for uid in stale:
        store.put(uid, [])
    for secret in secrets:
        store.put_secret(secret)
