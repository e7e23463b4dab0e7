"""A minimal HTTPS client for the launcher's own readiness checks.

It authenticates with the admin client certificate and speaks plain JSON, so starting
a cluster does not need (or pay the import time of) the ``kubernetes`` package.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class ApiError(Exception):
    """The API server answered with an HTTP error status."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body[:500]}")


class RestClient:
    """GET/POST/PATCH/DELETE JSON to a Kubernetes API server with a client certificate."""

    def __init__(
        self, server: str, ca_file: Path, cert_file: Path, key_file: Path, timeout: float = 5.0
    ) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._context.load_cert_chain(str(cert_file), str(key_file))

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        """Send a request; return the decoded JSON (or text) body, raise ApiError on 4xx/5xx."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context
            ) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode(errors="replace")) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        """A JSON merge patch (what ``kubectl patch --type=merge`` sends)."""
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)
