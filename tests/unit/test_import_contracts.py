"""The import contracts in pyproject.toml hold, and a wrong-way import breaks ``make lint``.

Each case copies the package, adds one import that crosses a layer the wrong way, and runs
``lint-imports`` (what ``make lint`` runs) against the copy: it must fail, naming the
contract. The real tree must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "promethios"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts; ``promethios`` is found in ``source_root``."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=source_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT / "operator")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("api/common.py", "from promethios.ingest import state", "api imports nothing of ours"),
        ("builders/meta.py", "from promethios.kube import objects", "builders import only api"),
        (
            "ingest/service.py",
            "import kubernetes",
            "only kube talks to the API server (kubernetes client)",
        ),
        (
            "sidecar/proxy.py",
            "import kopf",
            "the sidecar imports only api, never kopf or kubernetes",
        ),
        (
            "controller/plan.py",
            "from promethios.ingest import codec",
            "controller and ingest never import each other",
        ),
        (
            "dashboard/views.py",
            "from promethios.controller import plan",
            "the dashboard never imports the controller or the ingest server",
        ),
        (
            "ingest/summary.py",
            "from promethios.dashboard import views",
            "nothing below the composition root imports the dashboard",
        ),
    ],
)
def test_a_wrong_way_import_breaks_the_lint(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    copy = tmp_path / "promethios"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
