"""Running `rke2ha` the way a script does: stdout a pipe, no COLUMNS in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CliResult


def run(*args: str, cwd: Path, stdout: int | None = None, timeout: float = 60) -> CliResult:
    """`rke2ha ARGS` with stdout a pipe (or the given descriptor) and no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "rke2ha", *args],
        cwd=cwd,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=env,
    )
    return CliResult(proc.returncode, proc.stdout or "", proc.stderr)
