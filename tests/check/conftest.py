"""Fixtures for the check tests: one real lab topology on 127.0.60.0/24 for the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The test modules here import their helpers (`topology`) by plain name.
sys.path.insert(0, str(Path(__file__).parent))

from topology import (
    NODES,
    OFFSET,
    LabProcesses,
    failing_ids,
    lab_spec,
    wait_for,
    write_spec,
)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcesses]:
    root = tmp_path_factory.mktemp("check-lab")
    spec_file = write_spec(root / "lab.yaml", lab_spec(OFFSET))
    procs = LabProcesses(spec_file, OFFSET, root)
    try:
        for name in NODES:
            procs.start_node(name)
        for name in NODES:
            procs.wait_node(name)
        procs.start_lb()
        procs.start_dns("dns", spec_file, 53 + OFFSET)
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def healthy_lab(lab: LabProcesses) -> LabProcesses:
    """The lab, once every check passes (after a previous test's fault was undone)."""
    results, _ = wait_for(lab.spec_file, lambda r: not failing_ids(r), within=10)
    assert not failing_ids(results), [r for r in results if r.failed]
    return lab
