"""`make run` headless: governance data flows sidecar -> ingest -> the GovernedAgent's status.

The demo starts its own control plane (as `make run` does on a fresh machine), so this
test does not use the session cluster; it needs only the testenv binaries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promethios_local.demo.samples import DEMO_PROVIDER_KEY

pytestmark = pytest.mark.timeout(400)


def test_make_run_headless_shows_governance_data(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.config.getoption("--cluster") != "local":
        pytest.skip("the demo always runs its own embedded control plane")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "promethios.cli",
            "demo",
            "--headless",
            "--timeout",
            "120",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "support-bot" in result.stdout and "True" in result.stdout

    data = json.loads(report.read_text())
    status = data["governedAgent"]["status"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True"
    assert conditions["HeartbeatFresh"] == "True"
    assert status["governance"]["violations"]["total"] >= 1
    assert any(v["type"].startswith("pii.") for v in status["governance"]["recentViolations"])
    assert status["heartbeat"]["state"] == "active"
    assert status["governance"]["trustScore"] < 1.0
    assert status["governanceIdentity"].startswith("ga-")
    # Only the sidecar held the provider credential, and it reached the provider.
    assert data["upstreamCalls"] >= 4
    assert data["upstreamCredentials"] == [f"Bearer {DEMO_PROVIDER_KEY}"]
    # The provider echoes what it received: the sidecar had redacted the leaked email.
    reply_line = next(line for line in result.stdout.splitlines() if "Email the refund" in line)
    assert "[REDACTED:email]" in reply_line.split("->", 1)[1]
    assert "jane.doe@example.com" not in reply_line.split("->", 1)[1]
