"""Fixtures every test area shares: the repo root, running the CLI in-process and as a
subprocess, free loopback ports, and the test machines (`testbed`, root only). Area-specific
fixtures live in that area's conftest."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.machines.testbed import TIMINGS as TESTBED_TIMINGS
from tests.support.machines.testbed import Testbed
from tests.support.machines.testbed import session as testbed_session

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


# The machines every test asking for `testbed` shares (booted once per session).
TESTBED_MACHINES = ("node-1", "node-2", "node-3")
TESTBED_TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "unshare", "chroot", "ip", "ssh")


def testbed_unavailable() -> str | None:
    """Why the test machines cannot run here, or None."""
    if os.geteuid() != 0:
        return "test machines need root (network namespaces, systemd-nspawn, overlay mounts)"
    missing = [tool for tool in TESTBED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"test machines need {', '.join(missing)}: run scripts/system-deps.sh as root"
    return None


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """Three Debian machines (node-1..node-3) on a private bridge, with a workstation
    namespace; see tests/support/machines/__init__.py for the API. Torn down at session end,
    also on failure, Ctrl-C and SIGTERM (turned into KeyboardInterrupt so pytest unwinds)."""
    reason = testbed_unavailable()
    if reason:
        pytest.skip(reason)
    with testbed_session(TESTBED_MACHINES) as bed:
        yield bed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TESTBED_TIMINGS:
        terminalreporter.section("test machines")
        for line in TESTBED_TIMINGS:
            terminalreporter.write_line(line)


# The first test that asks for the machines also pays for building the root filesystem
# (minutes when it is not cached yet) and booting them; pytest-timeout counts fixture setup.
TESTBED_SETUP_TIMEOUT = 900


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the test machines gets the `machines` marker: `make test`
    (scripts/test.sh) runs those in one pytest and the rest in another, side by side. The
    first of them also gets the longer timeout for building and booting the machines."""
    first_on_machines = True
    for item in items:
        if "testbed" not in getattr(item, "fixturenames", ()):
            continue
        item.add_marker(pytest.mark.machines)
        if first_on_machines:
            item.add_marker(pytest.mark.timeout(TESTBED_SETUP_TIMEOUT), append=False)
            first_on_machines = False
