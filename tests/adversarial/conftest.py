"""The governed agent as attacker: fixtures for the sidecar escapes (issue 10).

The sidecar's test doubles (fake model provider, ingest recorder) and fixtures
are the unit tests' own (``tests/unit/sidecar/sidecar_fakes.py``, on pytest's
``pythonpath``), so both suites exercise the same harness.
"""

from __future__ import annotations

from sidecar_fakes import ingest, make_sidecar, upstream

__all__ = ["ingest", "make_sidecar", "upstream"]
