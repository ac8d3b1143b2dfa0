"""Commands rke2ha prints for people run as printed (issue 15, item 3).

`make demo` runs `.venv/bin/rke2ha`, which is not on PATH: the lab's "Stop it with" line
must say `.venv/bin/rke2ha down -f examples/lab.yaml`, not `rke2ha down ...` (exit 127).
The live test starts the console script by its relative path, with PATH not containing
it, copies the printed stop command and runs it through a shell (127.0.174.0/24).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.lab_up.helpers import (
    CLI_TIMEOUT,
    assert_nothing_left,
    lab_spec,
    listening_sockets,
    write_spec,
)

from rke2ha.invocation import command, program, spec_command
from rke2ha.specfile import load_spec

PREFIX = "127.0.174."
OFFSET = 24500


def test_program_is_the_path_it_was_started_by_unless_path_finds_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "rke2ha"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert program(".venv/bin/rke2ha") == ".venv/bin/rke2ha"
    assert program(str(script)) == ".venv/bin/rke2ha"  # absolute, shortened
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert program(str(script)) == "rke2ha"  # PATH finds this very program
    assert program("/somewhere/rke2ha/__main__.py").endswith(" -m rke2ha")  # python -m


def test_commands_name_the_spec_file_and_quote_what_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec_file = write_spec(tmp_path / "my labs" / "lab.yaml", lab_spec())
    spec = load_spec(Path("my labs/lab.yaml"))
    assert spec_command(spec, "check").endswith(" check -f 'my labs/lab.yaml'")
    assert command("down", "-f", spec_file).endswith(" down -f 'my labs/lab.yaml'")
    assert "<spec>" not in spec_command(spec, "check")


def test_the_printed_stop_command_runs_as_printed(tmp_path: Path) -> None:
    assert listening_sockets(PREFIX) == [], f"{PREFIX}x is in use before the test"
    document = lab_spec(offset=OFFSET, lab={"subnet": f"{PREFIX}0/24", "port_offset": OFFSET})
    spec_file = write_spec(tmp_path / "lab.yaml", document)
    # The console script beside this interpreter, run by a relative path as `make demo` does.
    script = Path(sys.executable).parent / "rke2ha"
    if not script.is_file():
        pytest.skip("no rke2ha console script beside this python (not an installed venv)")
    (tmp_path / "bin").symlink_to(script.parent)
    env = dict(os.environ, PATH="/usr/bin:/bin", COLUMNS="200")
    up = subprocess.run(
        ["bin/rke2ha", "up", "-f", "lab.yaml", "--detach", "--port-offset", str(OFFSET)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        stop = [line for line in up.stdout.splitlines() if line.startswith("Stop it with")]
        assert stop == ["Stop it with  bin/rke2ha down -f lab.yaml"]
    finally:
        printed = "bin/rke2ha down -f lab.yaml"
        down = subprocess.run(
            printed, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=CLI_TIMEOUT,
        )  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(spec_file, PREFIX)


def test_init_and_lab_status_print_commands_that_run_as_printed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "rke2ha"
    if not script.is_file():
        pytest.skip("no rke2ha console script beside this python (not an installed venv)")
    (tmp_path / "bin").symlink_to(script.parent)
    env = dict(os.environ, PATH="/usr/bin:/bin", COLUMNS="200")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bin/rke2ha", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=CLI_TIMEOUT,
        )  # fmt: skip

    init = run("init", "-f", "z.yaml")
    assert init.returncode == 0, init.stderr
    assert (
        init.stdout.strip()
        == "wrote z.yaml (provider lab); check it with: bin/rke2ha validate -f z.yaml"
    )
    printed = init.stdout.split("check it with: ", 1)[1].strip()
    validate = subprocess.run(
        printed, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=CLI_TIMEOUT,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stdout + validate.stderr
    write_spec(tmp_path / "lab.yaml", lab_spec(offset=OFFSET))
    status = run("lab", "status", "-f", "lab.yaml")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "Start it with: bin/rke2ha up -f lab.yaml" in status.stdout
