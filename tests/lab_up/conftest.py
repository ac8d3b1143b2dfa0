"""Fixtures of the lab tests: one lab per module, torn down and checked for leftovers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.lab_up.helpers import (
    assert_nothing_left,
    down,
    lab_spec,
    listening_sockets,
    up,
    write_spec,
)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab_up")


@pytest.fixture(scope="module")
def running_lab(lab_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A lab up with the port offset for the whole module; down (and verified) at the end."""
    assert listening_sockets() == [], "127.0.70.x is in use: another lab is still running"
    spec_file = write_spec(lab_dir / "rke2ha.yaml", lab_spec())
    run = up(spec_file)
    try:
        assert run.code == 0, run.err + run.out
        yield spec_file, run.json()
    finally:
        result = down(spec_file)
        assert result.code == 0, result.err
        assert_nothing_left(spec_file)
