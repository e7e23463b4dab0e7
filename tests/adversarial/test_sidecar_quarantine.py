"""Quarantine, the sidecar's part: a quarantined agent's model calls fail, live.

The operator tells the sidecar through its config (``quarantined``, re-read live: the pods
are not rolled). From then on no call reaches the provider — not on a new connection (the
NetworkPolicy stops those too), nor on one the sidecar kept alive (a NetworkPolicy does not
cut established flows) — while the calls are still inspected and their violations
reported. The release restores the calls.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
from sidecar_fakes import Ingest, SidecarFactory, Upstream

from promethios.sidecar.app import Sidecar

EMAIL_PROMPT = {"model": "gpt-test", "messages": [{"role": "user", "content": "mail jo@x.org"}]}
HELLO = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}


async def ask(session: aiohttp.ClientSession, sidecar: Sidecar, body: Any) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{sidecar.agent_port}/v1/chat/completions"
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


def set_quarantined(path: Path, value: bool) -> None:
    config = json.loads(path.read_text())
    config["quarantined"] = value
    path.write_text(json.dumps(config))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


async def until(predicate: Any, what: str) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_quarantined_agents_calls_fail_and_are_still_reported(
    make_sidecar: SidecarFactory, upstream: Upstream, ingest: Ingest, tmp_path: Path
) -> None:
    sidecar = await make_sidecar()
    config_path = tmp_path / "config.json"
    # One keep-alive session, as an SDK holds: the sidecar's upstream connection stays open.
    async with aiohttp.ClientSession() as session:
        assert (await ask(session, sidecar, HELLO))[0] == 200
        forwarded = len(upstream.requests)
        set_quarantined(config_path, True)
        await until(lambda: sidecar.store.config.quarantined, "the quarantine to apply")
        status, answer = await ask(session, sidecar, HELLO)
        assert status == 403 and answer["error"]["code"] == "agent_quarantined", answer
        spooled = len(list((tmp_path / "spool").glob("*.json")))
        status, _ = await ask(session, sidecar, EMAIL_PROMPT)
        assert status == 403
        assert len(upstream.requests) == forwarded  # nothing reached the provider
        # ... but what the call carried is still inspected and reported
        await until(
            lambda: (
                len(list((tmp_path / "spool").glob("*.json"))) > spooled
                or len(ingest.violations) > 0
            ),
            "the quarantined call's PII violation to be recorded",
        )
        set_quarantined(config_path, False)
        await until(lambda: not sidecar.store.config.quarantined, "the release to apply")
        assert (await ask(session, sidecar, HELLO))[0] == 200
        assert len(upstream.requests) == forwarded + 1


async def test_entering_quarantine_drops_the_kept_alive_provider_connections(
    make_sidecar: SidecarFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """A NetworkPolicy does not cut established flows: the sidecar closes its own."""
    sidecar = await make_sidecar()
    async with aiohttp.ClientSession() as session:
        assert (await ask(session, sidecar, HELLO))[0] == 200
    before = sidecar.upstream_session
    assert before is not None and not before.closed
    set_quarantined(tmp_path / "config.json", True)
    await until(lambda: before.closed, "the old provider session to be closed")
    assert sidecar.upstream_session is not None and sidecar.upstream_session is not before
