"""`rke2ha check --drill --lb` input errors: exit 2 with one line, before anything is probed."""

from __future__ import annotations

from pathlib import Path

import pytest
from topology import lab_spec, write_spec

from rke2ha.cli import main


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--lb"], "--lb goes with --drill"),
        (["--drill", "--lb", "--drill-node", "node-1"], "--drill-node picks a node"),
        (["--drill", "--lb"], "needs two load_balancer.hosts"),
    ],
)
def test_lb_drill_flags_without_a_pair_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], words: str
) -> None:
    spec = write_spec(tmp_path / "lab.yaml", lab_spec(23000))
    code = main(["check", "-f", str(spec), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err and "Traceback" not in err
