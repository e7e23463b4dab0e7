"""Fixtures for the operator's unit tests (the builders behind them: :mod:`operator_fakes`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from operator_fakes import NOW, Keys, make_agent


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def agent_factory() -> Any:
    return make_agent


@pytest.fixture
def now() -> datetime:
    return NOW
