"""What the AlertSink attacker tests run against: listeners on addresses deliveries must never
reach, a receiver they may reach, a DNS server the test controls, and one delivery at a time.

Every address here is on this machine (127.0.0.0/8 and ::1 answer without any setup), so the
tests add nothing to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from promethios.ingest.aggregator import Aggregator
from promethios.ingest.alertformat import Alert, ResolvedSink
from promethios.ingest.alerts import AlertDispatcher, DeliveryFailure
from promethios.ingest.destinations import DestinationPolicy
from promethios.ingest.metrics import IngestMetrics

ALERT = Alert("team-a", "support-bot", "v1", "pii", "critical", "an email", "2024-01-01", 0.4)


class Listener:
    """A TCP listener on a forbidden address: it records who connected and answers nothing.

    :meth:`quiet` proves a negative by waiting for a positive marker: it connects itself and
    waits until that connection is seen; connections are accepted in order, so anything the
    delivery made before would have been seen first.
    """

    def __init__(self) -> None:
        self.peers: list[tuple[Any, ...]] = []
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accepted, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername"))
        writer.close()

    async def others_than_marker(self) -> list[tuple[Any, ...]]:
        """Connections seen before our own marker connection."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        marker = writer.get_extra_info("sockname")
        deadline = time.monotonic() + 5
        while not any(peer[:2] == marker[:2] for peer in self.peers):
            assert time.monotonic() < deadline, "the marker connection was never seen"
            await asyncio.sleep(0.01)
        writer.close()
        return [peer for peer in self.peers if peer[:2] != marker[:2]]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Receiver:
    """An allowed HTTP receiver: records bodies and headers, answers ``status`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.answers: list[web.StreamResponse] = []
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((await request.read(), dict(request.headers)))
        return self.answers.pop(0) if self.answers else web.Response(status=200)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class FakeDNS(AbstractResolver):
    """Answers from a table; a name with a list of answers gives the next one per lookup."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        answers = self.table.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


@dataclass
class Outcome:
    """What one delivery did: metric results, the failure handed on, the sleeps asked for."""

    results: dict[str, float]
    failures: list[DeliveryFailure] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    seconds: float = 0.0


async def deliver(
    sink: ResolvedSink,
    policy: DestinationPolicy,
    dns: AbstractResolver | None = None,
    alert: Alert = ALERT,
    clock: Any = time.time,
    **options: Any,
) -> Outcome:
    """Deliver ``alert`` to ``sink`` once, through a real dispatcher; sleeps are recorded only."""
    metrics = IngestMetrics(Aggregator(), time.time)
    outcome = Outcome({})

    async def sleep(seconds: float) -> None:
        outcome.sleeps.append(seconds)
        await asyncio.sleep(0)

    async def failed(_: Alert, __: ResolvedSink, failure: DeliveryFailure) -> None:
        outcome.failures.append(failure)

    dispatcher = AlertDispatcher(
        _OneSink(sink), metrics, clock, on_failure=failed, sleep=sleep, policy=policy, dns=dns,
        **options,
    )  # fmt: skip
    started = time.monotonic()
    async with _running(dispatcher):
        dispatcher.submit(alert, (sink.name,))
        await asyncio.wait_for(dispatcher.idle(), 30)
    outcome.seconds = time.monotonic() - started
    for result in ("ok", "retried", "failed", "refused"):
        value = metrics.registry.get_sample_value(
            "promethios_alert_deliveries_total", {"sink_type": sink.type, "result": result}
        )
        outcome.results[result] = value or 0.0
    return outcome


class _OneSink:
    def __init__(self, sink: ResolvedSink) -> None:
        self.sink = sink

    async def resolve(self, namespace: str, names: tuple[str, ...]) -> list[ResolvedSink]:
        return [self.sink]


@contextlib.asynccontextmanager
async def _running(dispatcher: AlertDispatcher) -> AsyncIterator[None]:
    worker = asyncio.create_task(dispatcher.run())
    try:
        yield
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
