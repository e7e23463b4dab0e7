"""The governed agent as attacker: fixtures for the sidecar escapes (issue 10).

The sidecar's test doubles (fake model provider, ingest recorder) and fixtures
are the unit tests' own (``tests/unit/sidecar/sidecar_fakes.py``), imported from
there so both suites exercise the same harness.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "sidecar"))

from sidecar_fakes import ingest, make_sidecar, upstream

__all__ = ["ingest", "make_sidecar", "upstream"]
