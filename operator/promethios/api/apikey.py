"""The API-key Secret contract between the operator (writer) and the ingest API (reader).

For every GovernedAgent ``<name>`` the operator writes a Secret ``<name>-api-key`` in the
agent's namespace, owned by the GovernedAgent (a controller owner reference), with

- labels ``app.kubernetes.io/managed-by=promethios-operator``,
  ``promethios.ai/component=api-key`` and ``promethios.ai/agent=<name>``;
- annotation ``promethios.ai/governance-identity=<id>`` (the agent's governance identity)
  and ``promethios.ai/api-key-rotation=<n>`` (the ``spec.apiKey.rotation`` of the key);
- data key ``apiKey``: the current key (only the sidecar mounts it);
- data key ``apiKeySha256``: lowercase hex SHA-256 of the UTF-8 bytes of ``apiKey``;
- during a rotation, data key ``previousApiKeySha256`` (hex SHA-256 of the previous key)
  and annotation ``promethios.ai/previous-key-expires-at=<RFC 3339>``; the previous key is
  accepted until then. Without the annotation the previous key is not accepted;
- after a quarantine revoked the key, annotation ``promethios.ai/revoked-for-breach=<n>``;
  the revoked key's digest stays in ``previousApiKeySha256`` until the expiry annotation
  (``spec.apiKey.gracePeriodSeconds`` later), with annotation
  ``promethios.ai/previous-key-scope=violations``: until then it delivers violations only
  (the sidecar may hold some — among them the one that caused the quarantine), never
  heartbeats or metrics.

The ingest API lists and watches Secrets with :data:`SECRET_SELECTOR` and reads only the
two digests (never ``apiKey``). Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from .metadata import LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY, PREFIX

#: ``promethios.ai/component`` of the Secret.
COMPONENT = "api-key"
SECRET_SUFFIX = "-api-key"
SECRET_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT}"

DATA_KEY = "apiKey"
DATA_SHA256 = "apiKeySha256"
DATA_PREVIOUS_SHA256 = "previousApiKeySha256"

ANNOTATION_PREVIOUS_EXPIRES = f"{PREFIX}/previous-key-expires-at"
#: The spec.apiKey.rotation the Secret's key belongs to (kept with the key, atomically).
ANNOTATION_ROTATION = f"{PREFIX}/api-key-rotation"
#: The enforcement breach whose quarantine already revoked the key (revoke once per breach).
ANNOTATION_REVOKED_BREACH = f"{PREFIX}/revoked-for-breach"
#: What the previous key may still be used for; absent: everything (a rotation's grace).
ANNOTATION_PREVIOUS_SCOPE = f"{PREFIX}/previous-key-scope"
#: The previous key of a quarantine: violation reports only.
SCOPE_VIOLATIONS = "violations"


def secret_name(agent_name: str) -> str:
    """The API-key Secret of the GovernedAgent ``agent_name``."""
    return agent_name + SECRET_SUFFIX


def sha256_hex(key: str) -> str:
    """Lowercase hex SHA-256 of a key's UTF-8 bytes (what ``apiKeySha256`` holds)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def decode_data(data: Mapping[str, Any], key: str) -> str | None:
    """One base64 ``data`` value of a Secret as text; None when absent or not valid."""
    raw = data.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
