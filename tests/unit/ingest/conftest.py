"""Fixtures for the ingest unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ingest_fakes import Clock, MemorySink, make_service

from promethios.ingest.app import build_app, build_metrics_app
from promethios.ingest.service import IngestService


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def service(clock: Clock, sink: MemorySink) -> AsyncIterator[IngestService]:
    service = make_service(clock, sink, rate_burst=1000, rate_per_second=1000.0)
    yield service
    await service.stop()


@pytest.fixture
async def client(service: IngestService) -> AsyncIterator[TestClient[Any, Any]]:
    """The report API (the agents' listener)."""
    async with TestClient(TestServer(build_app(service))) as test_client:
        yield test_client


@pytest.fixture
async def metrics_client(service: IngestService) -> AsyncIterator[TestClient[Any, Any]]:
    """The metrics and probe listener of the same service."""
    async with TestClient(TestServer(build_metrics_app(service))) as test_client:
        yield test_client
