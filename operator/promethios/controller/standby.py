"""A replica's wait for leadership, in the operator's event loop.

While a replica is a standby it must stay alive and stoppable: the ingest API (a
companion) serves reports, a SIGTERM ends the process cleanly, and the liveness probe
gets an answer although kopf (whose endpoint answers it once leading) has not started.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from aiohttp import web

from .election import LeaderElector

log = logging.getLogger("promethios.leader")


class StandbyLiveness:
    """``GET /healthz`` on the liveness port until kopf takes the port over."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    async def _healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})


def _on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT end the wait (kopf installs its own handlers once it runs)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


async def lead(elector: LeaderElector, liveness_port: int | None) -> bool:
    """Run ``elector`` until this replica leads (True) or a signal stops it first (False)."""
    loop = asyncio.get_running_loop()
    won, stop = asyncio.Event(), asyncio.Event()

    def started() -> None:
        loop.call_soon_threadsafe(won.set)

    elector.on_started = started
    _on_signals(loop, stop)
    liveness = StandbyLiveness(liveness_port) if liveness_port else None
    if liveness is not None:
        await liveness.start()
    elector.start()
    waits = [asyncio.create_task(won.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        if liveness is not None:
            await liveness.stop()
    if stop.is_set():
        log.info("stopping before leading")
        return False
    log.info("leading: starting the controller")
    return True
