"""Fixtures for the render tests (helpers live in `tests.render.helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.render.helpers import SpecFactory


@pytest.fixture
def specs(tmp_path: Path) -> SpecFactory:
    return SpecFactory(tmp_path)
