"""Fixtures for tests that need the project's CRDs on the session's cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promethios_local.localcluster import install_crds

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


def crd_files() -> list[Path]:
    """The committed CRD manifests (kept equal to the models by the unit drift test)."""
    files = sorted(CRDS_DIR.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRDs in {CRDS_DIR}; run `promethios crds`", pytrace=False)
    return files


@pytest.fixture(scope="session")
def crds_installed(cluster: Any) -> list[str]:
    """Apply ``crds/*.yaml`` (server-side) once per session; wait until they are Established.

    Returns the CRD names, e.g. ``governedagents.governance.promethios.ai``.
    """
    return install_crds(cluster, crd_files())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests left their screenshots (when any ran)."""
    from browser import artifacts_dir

    shots = sorted(artifacts_dir().glob("*.png")) if _browser_ran else []
    if shots:
        terminalreporter.write_line(f"browser screenshots ({len(shots)}): {artifacts_dir()}")


_browser_ran = False


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The directory browser tests save screenshots into (printed at the end of the run)."""
    from browser import artifacts_dir

    global _browser_ran
    _browser_ran = True
    return artifacts_dir()
