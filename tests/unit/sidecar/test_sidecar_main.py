"""``promethios sidecar`` as a process: starts, serves, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from promethios.sidecar.delivery import full_jitter, jittered
from promethios.sidecar.main import main

CLI = "import sys; from promethios.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runs_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k")
    proxy, metrics = free_port(), free_port()
    config = {
        "agentId": "ns/a",
        "governanceIdentity": "g",
        "policyName": "p",
        "provider": {"type": "openai", "baseUrl": "http://127.0.0.1:9/v1"},
        "ingest": {"url": "http://127.0.0.1:9", "apiKeyFile": str(tmp_path / "key")},
        "proxyPort": proxy,
        "metricsPort": metrics,
        "spoolDir": str(tmp_path / "spool"),
        "terminationMessagePath": str(tmp_path / "termination-log"),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    cmd = [sys.executable, "-c", CLI, "sidecar", "--config", str(tmp_path / "config.json")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{proxy}/healthz", timeout=1) as r:
            assert json.load(r) == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert json.loads((tmp_path / "termination-log").read_text())["undeliveredViolations"] == 0


def test_bad_config_exits_1(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert main(["--config", str(tmp_path / "config.json")]) == 1
    assert main(["--config", str(tmp_path / "missing.json")]) == 1


@pytest.mark.parametrize("seed", range(5))
def test_backoff_and_jitter_bounds(seed: int) -> None:
    import random

    rng = random.Random(seed)
    for attempt in range(12):
        delay = full_jitter(attempt, 0.5, 60.0, rng)
        assert 0 <= delay <= min(60.0, 0.5 * 2**attempt)
    for _ in range(50):
        assert 27.0 <= jittered(30, rng) <= 33.0


def test_big_buffers_go_back_to_the_os_on_glibc() -> None:
    import platform

    from promethios.sidecar.main import return_big_buffers_to_the_os

    assert return_big_buffers_to_the_os() is (platform.libc_ver()[0] == "glibc")
