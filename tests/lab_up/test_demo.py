"""`make demo`'s script prints one screen and commands that run as printed (issue 15).

Before: 141 lines, the check table twice (up's and check --drill's), the connection hints
twice, and `rke2ha down ...` although rke2ha was not on PATH. The script runs here on a
spec of this test's own (127.0.175.0/24; real ports as root, else offset 25000) instead of
examples/lab.yaml, so it never meets a demo someone runs by hand.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.lab_up.helpers import assert_nothing_left, lab_spec, listening_sockets, write_spec

REPO = Path(__file__).resolve().parents[2]
PREFIX = "127.0.175."
OFFSET = 25000
SCREEN = 30  # lines


def test_demo_prints_one_screen_and_its_stop_command_works(tmp_path: Path) -> None:
    if not (REPO / ".venv" / "bin" / "rke2ha").is_file():
        pytest.skip("the demo runs .venv/bin/rke2ha: no .venv in this checkout")
    assert listening_sockets(PREFIX) == [], f"{PREFIX}x is in use before the test"
    document = lab_spec(offset=OFFSET, lab={"subnet": f"{PREFIX}0/24", "port_offset": OFFSET})
    spec_file = write_spec(tmp_path / "lab.yaml", document)
    env = dict(os.environ, DEMO_SPEC=str(spec_file), DEMO_OUT=str(tmp_path / "out"))
    demo = subprocess.run(
        ["scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert demo.returncode == 0, demo.stdout + demo.stderr
        lines = demo.stdout.splitlines()
        assert len(lines) <= SCREEN, demo.stdout
        assert not any("┃" in line for line in lines)  # no check table (one command away)
        assert sum("checks passed" in line for line in lines) == 2  # up's, check's
        assert sum(line.startswith("Stop it:") for line in lines) == 1
        assert demo.stderr == ""
    finally:
        stops = [line for line in demo.stdout.splitlines() if line.startswith("Stop it:")]
        printed = stops[0].removeprefix("Stop it:").strip() if stops else ""
        down = subprocess.run(
            printed or f".venv/bin/rke2ha down -f {spec_file}", shell=True, cwd=REPO,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(spec_file, PREFIX)
