"""Fixtures every test area shares: the repo root, running the CLI in-process and as a
subprocess, and free loopback ports. Area-specific fixtures live in that area's conftest."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free on `host` a moment ago (bind to 0 and read it back)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """Run `rke2ha ARGS...` as a real subprocess (the way a user does) and capture it."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 60, stdin: str = "") -> CliResult:
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
        proc = subprocess.run(
            [sys.executable, "-m", "rke2ha", *args],
            cwd=cwd or REPO,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
