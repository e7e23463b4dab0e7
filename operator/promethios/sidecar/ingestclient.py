"""The ingest API's client: the agent's identity, its current key, and verified TLS.

Every request carries ``Authorization: Bearer <key>`` (the key file as mounted),
``X-Agent-ID`` and ``X-Governance-ID``. A 401 makes the client re-read the key
file and, if the key changed, retry at once. Over https the ingest's certificate
is verified against ``ingest.caFile`` (else the system trust store).
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from promethios.api.wire import HEADER_AGENT_ID, HEADER_GOVERNANCE_ID, HEADER_IDEMPOTENCY_KEY

from .config import FileStamp, stamp
from .state import SidecarState

log = logging.getLogger(__name__)

RETRYABLE_4XX = frozenset({401, 408, 429})
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class IngestResponse:
    """What the ingest API answered; ``status`` None means it could not be reached."""

    status: int | None
    retry_after: float | None = None
    body: Any = field(default=None, compare=False)
    """The parsed JSON answer, when asked for (``read_json``) and it was JSON."""

    @property
    def ok(self) -> bool:
        """2xx."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent_failure(self) -> bool:
        """A 4xx that retrying will not fix."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in RETRYABLE_4XX
        )


def tls_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """How the ingest's certificate is verified: against ``ca_file``, else the system store.

    A CA file that cannot be read trusts nothing (every handshake fails) rather
    than falling back to the system store: fail closed, and say so.
    """
    if ca_file is None:
        return True  # aiohttp's default: verify against the system trust store
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        log.error(
            "cannot load the ingest CA bundle %s (%s): trusting no certificate", ca_file, error
        )
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class IngestClient:
    """POSTs JSON to the ingest API with the agent's identity and current key.

    Owns its connection pool (``pool_size`` connections), rebuilt when the CA
    bundle named by ``ingest.caFile`` changes, so a rotated CA is trusted at once.
    """

    def __init__(self, state: SidecarState, pool_size: int) -> None:
        self.state = state
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._trust: tuple[str | None, FileStamp | None] | None = None

    async def session(self) -> aiohttp.ClientSession:
        """The pool, verifying against the current CA bundle."""
        ca_file = self.state.store.config.ingest.ca_file
        trust = (ca_file, stamp(ca_file))
        if self._session is None or trust != self._trust:
            stale, self._trust = self._session, trust
            connector = aiohttp.TCPConnector(limit=self.pool_size, ssl=tls_context(ca_file))
            self._session = aiohttp.ClientSession(connector=connector)
            if stale is not None:
                await stale.close()
        return self._session

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        path: str,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
        read_json: bool = False,
        timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT,  # noqa: ASYNC109 - aiohttp's own
    ) -> IngestResponse:
        """POST ``payload`` to ``path``; on 401 re-read the key file and retry once.

        ``read_json``: keep the parsed answer in ``body``.
        """
        response = await self._post_once(path, payload, idempotency_key, read_json, timeout)
        if response.status == 401 and self.state.store.reread_api_key():
            log.info("ingest API answered 401; retrying with the re-read key")
            response = await self._post_once(path, payload, idempotency_key, read_json, timeout)
        return response

    def _url(self, path: str) -> str:
        return self.state.store.config.ingest.url.rstrip("/") + path

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        snapshot = self.state.store.current
        headers = {
            HEADER_AGENT_ID: snapshot.config.agent_id,
            HEADER_GOVERNANCE_ID: snapshot.config.governance_identity,
        }
        if snapshot.api_key:
            headers["Authorization"] = f"Bearer {snapshot.api_key}"
        if idempotency_key:
            headers[HEADER_IDEMPOTENCY_KEY] = idempotency_key
        return headers

    async def _post_once(
        self,
        path: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        read_json: bool = False,
        timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT,  # noqa: ASYNC109 - aiohttp's own
    ) -> IngestResponse:
        try:
            session = await self.session()
            async with session.post(
                self._url(path),
                json=payload,
                headers=self._headers(idempotency_key),
                timeout=timeout,
            ) as resp:
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                return IngestResponse(resp.status, retry_after, _json(raw) if read_json else None)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.debug("ingest API unreachable: %s", error)
            return IngestResponse(None)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
