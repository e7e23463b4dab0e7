"""Fixtures for the sidecar HTTP tests (the doubles live in :mod:`sidecar_fakes`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sidecar_fakes import Ingest, SidecarFactory, Upstream, serve, write_config

from promethios.sidecar.app import Sidecar


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream()
    fake.server = await serve(fake.handle)
    yield fake
    await fake.server.close()


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    recorder = Ingest()
    recorder.server = await serve(recorder.handle)
    yield recorder
    await recorder.server.close()


@pytest.fixture
async def make_sidecar(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> AsyncIterator[SidecarFactory]:
    started: list[Sidecar] = []

    async def factory(loops: bool = False, **overrides: Any) -> Sidecar:
        path = tmp_path / "config.json"
        if overrides or not path.exists():
            path = write_config(tmp_path, upstream.url, ingest.url, **overrides)
        sidecar = Sidecar(path, poll_seconds=0.05, backoff_base=0.01, backoff_cap=0.05, loops=loops)
        await sidecar.start(agent_port=0, metrics_port=0)
        started.append(sidecar)
        return sidecar

    yield factory
    for sidecar in started:
        await sidecar.stop()
