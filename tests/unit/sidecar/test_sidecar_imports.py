"""The sidecar stays small: it never imports kopf or the Kubernetes client."""

from __future__ import annotations

import subprocess
import sys


def test_sidecar_does_not_import_kopf_or_kubernetes() -> None:
    code = (
        "import sys, promethios.sidecar.main, promethios.sidecar.app\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'kopf', 'kubernetes'})\n"
        "print(','.join(heavy))\n"
        "assert 'aiohttp' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_cli_dispatches_to_sidecar_main() -> None:
    from promethios.cli import resolve
    from promethios.sidecar.main import main

    assert resolve("sidecar") is main
