"""Sidecar fixtures, defined in :mod:`sidecar_fakes`, shared with tests/adversarial."""

from __future__ import annotations

from sidecar_fakes import ingest, make_sidecar, upstream

__all__ = ["ingest", "make_sidecar", "upstream"]
