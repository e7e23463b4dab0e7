"""Headless Chromium for the browser tests (not a test module): Debian's ``chromium`` driven
through Playwright, and where screenshots go.

Playwright drives the system browser (``executable_path``; never ``playwright install``,
which would download a browser build). Chromium runs with a fresh profile directory, no
sandbox (root in a container), no GPU, and nothing that would reach the network on its own
(no QUIC, no background networking, component updates or sync): the machine is closed.

Screenshots are written under ``$PROMETHIOS_ARTIFACTS`` (default ``test-artifacts/``
in the checkout) in ``browser/``; pytest prints the directory at the end of the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("PROMETHIOS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Where this run's screenshots go (created)."""
    base = Path(os.environ.get("PROMETHIOS_ARTIFACTS", ROOT / "test-artifacts"))
    path = base / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A Playwright browser context on Debian's chromium with a fresh ``profile``."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} not found: run `make browser` (apt-get install chromium)", pytrace=False
        )
    from playwright.sync_api import sync_playwright

    if profile.exists():
        shutil.rmtree(profile)
    profile.mkdir(parents=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
