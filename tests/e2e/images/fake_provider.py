"""The end-to-end tests' model provider: the demo's fake provider (upstream.py, copied in
at image build) served on ``$PORT``, plus ``GET /seen``: the SHA-256 digest of every
credential it received and the paths called, so a test can check that calls arrived
with the provider credential (which only the sidecar holds) without printing it."""

from __future__ import annotations

import hashlib
import os

from aiohttp import web
from upstream import UPSTREAM_LOG, build_upstream_app


async def seen(request: web.Request) -> web.Response:
    log = request.app[UPSTREAM_LOG]
    digests = [
        hashlib.sha256(c.removeprefix("Bearer ").encode()).hexdigest() for c in log.credentials
    ]
    return web.json_response({"credential_sha256": digests, "paths": log.paths})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = build_upstream_app()
    app.router.add_get("/seen", seen)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")), print=None)


if __name__ == "__main__":
    main()
