"""Escape 7 (sidecar side): violations lost when the pod is replaced.

Any rollout, scale-down, suspend or eviction stops the sidecar, and its spool is
an emptyDir. On SIGTERM the sidecar must keep delivering until the spool is empty
or ``drainSeconds`` have passed, then leave a summary of what is still undelivered
(counts, severities, oldest time: never content) in the container's termination
message, so the loss shows. Drop counts sent in metrics reports must be neither
lost nor counted twice when a report's answer is lost.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from sidecar_fakes import Ingest, SidecarFactory, Upstream, write_config

from promethios.api.wire import PATH_METRICS

CLI = "import sys; from promethios.cli import main; sys.exit(main())"
PII = {"model": "m", "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A real ``promethios sidecar`` process against the test's fake upstream and ingest."""

    def __init__(self, tmp_path: Path, upstream: Upstream, ingest: Ingest, **config: Any) -> None:
        self.proxy, self.metrics = free_port(), free_port()
        self.termination = tmp_path / "termination-log"
        self.config = write_config(
            tmp_path,
            upstream.url,
            ingest.url,
            proxyPort=self.proxy,
            metricsPort=self.metrics,
            terminationMessagePath=str(self.termination),
            **config,
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = [sys.executable, "-c", CLI, "sidecar", "--config", str(self.config)]
        self.proc = await asyncio.create_subprocess_exec(*argv)
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                try:
                    async with session.get(f"http://127.0.0.1:{self.metrics}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.returncode is None, "the sidecar exited"
                await asyncio.sleep(0.05)
        raise AssertionError("the sidecar did not become ready")

    async def violate(self, times: int) -> None:
        url = f"http://127.0.0.1:{self.proxy}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            for _ in range(times):
                async with session.post(url, json=PII) as response:
                    assert response.status == 200  # redacted, forwarded, reported

    async def terminate(self, within: float) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), within)
        return code, loop.time() - started

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_sigterm_drains_the_spool_before_exiting(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    ingest.status = 503  # the ingest is down: violations wait in the spool, backing off
    sidecar = Process(tmp_path, upstream, ingest, drainSeconds=10)
    try:
        await sidecar.start()
        await sidecar.violate(5)
        await asyncio.sleep(2.0)  # the sender is now asleep in its backoff
        ingest.status = 200  # the ingest is back just as the pod is replaced
        code, _ = await sidecar.terminate(within=15)
    finally:
        await sidecar.kill()
    assert code == 0
    delivered = [v for v in ingest.violations.values() if v["type"] == "pii.email"]
    assert len(delivered) == 5, f"{len(delivered)} of 5 violations delivered before exit"
    summary = json.loads(sidecar.termination.read_text())
    assert summary["undeliveredViolations"] == 0


async def test_undelivered_summary_in_the_termination_message(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    ingest.status = 503  # down for good
    sidecar = Process(tmp_path, upstream, ingest, drainSeconds=1)
    try:
        await sidecar.start()
        await sidecar.violate(3)
        code, took = await sidecar.terminate(within=15)
    finally:
        await sidecar.kill()
    assert code == 0 and took < 6.0, f"exit took {took:.1f} s with drainSeconds=1"
    text = sidecar.termination.read_text()
    summary = json.loads(text)
    assert summary["undeliveredViolations"] == 3
    assert summary["undeliveredBySeverity"] == {"medium": 3}
    assert summary["oldestUndelivered"].endswith("Z")
    assert "jane" not in text and "example.com" not in text and "pii" not in text
    assert len(text.encode()) < 4096  # the kubelet keeps at most 4 KiB of it


def dropped_recorded(ingest: Ingest) -> Counter[str]:
    """Drop counts the ingest recorded, once per report (reports deduped by key)."""
    total: Counter[str] = Counter()
    for report in ingest.metrics_by_key.values():
        total.update(report["metrics"]["droppedViolationsBySeverity"])
    return total


async def test_drop_counts_survive_a_lost_answer_without_double_counting(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    sidecar = await make_sidecar()
    assert sidecar.delivery is not None
    sidecar.state.spool.dropped["low"] += 2  # as if the spool had overflowed
    ingest.lose_answers = 1  # the ingest records the report, but its answer is lost
    assert not (await sidecar.delivery.send_metrics()).ok
    sidecar.state.spool.dropped["high"] += 3  # more drops meanwhile
    assert (await sidecar.delivery.send_metrics()).ok
    assert (await sidecar.delivery.send_metrics()).ok
    assert dropped_recorded(ingest) == Counter({"low": 2, "high": 3})
    assert len(ingest.bodies(PATH_METRICS)) == 3


async def test_drop_counts_survive_an_unreachable_ingest(
    make_sidecar: SidecarFactory, ingest: Ingest
) -> None:
    sidecar = await make_sidecar()
    assert sidecar.delivery is not None
    sidecar.state.spool.dropped["critical"] += 1
    ingest.status = 503
    assert not (await sidecar.delivery.send_metrics()).ok
    ingest.status = 200
    assert (await sidecar.delivery.send_metrics()).ok
    assert dropped_recorded(ingest) == Counter({"critical": 1})


async def test_a_second_signal_stops_without_waiting_for_the_drain(
    tmp_path: Path, upstream: Upstream, ingest: Ingest
) -> None:
    ingest.status = 503
    sidecar = Process(tmp_path, upstream, ingest, drainSeconds=60)
    try:
        await sidecar.start()
        await sidecar.violate(1)
        assert sidecar.proc is not None
        sidecar.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # draining against a dead ingest
        assert sidecar.proc.returncode is None
        code, took = await sidecar.terminate(within=10)
    finally:
        await sidecar.kill()
    assert code == 0 and took < 5.0
    assert json.loads(sidecar.termination.read_text())["undeliveredViolations"] == 1
