"""Fixtures for the ingest unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ingest_fakes import Clock, MemorySink, make_service

from promethios.ingest.app import build_app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def client(clock: Clock, sink: MemorySink) -> AsyncIterator[TestClient[Any, Any]]:
    service = make_service(clock, sink, rate_burst=1000, rate_per_second=1000.0)
    async with TestClient(TestServer(build_app(service))) as test_client:
        yield test_client
    await service.stop()
