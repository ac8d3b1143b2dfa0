"""rke2ha.procs against real child processes: alive, ended, a zombie, a foreign cmdline.

Also checks the two providers' views built on it (lab `inspect`, existing `cmdline`), so a
change in the shared readers shows up as the providers see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rke2ha import procs
from rke2ha.providers.existing import processes as existing
from rke2ha.providers.lab import processes as lab

SLEEP_ARGV = ("sleep", "30")
TIMEOUT = 5.0


def _until(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until true; fail the test after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(TIMEOUT)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(list(SLEEP_ARGV))
    try:
        # /proc/<pid>/cmdline is the parent's until the child has exec'd.
        _until(lambda: procs.cmdline(proc.pid) == SLEEP_ARGV, "sleep to exec")
        yield proc
    finally:
        _end(proc)


def test_running_child_is_alive_with_its_cmdline_and_start_time(
    sleeper: subprocess.Popen[bytes],
) -> None:
    pid = sleeper.pid
    stat = procs.read_stat(pid)
    assert stat is not None
    assert stat.state in ("R", "S")
    assert procs.alive(pid)
    assert procs.cmdline(pid) == SLEEP_ARGV
    assert procs.cmdline_bytes(pid) == b"sleep\x0030\x00"
    # Start time is fixed for the life of the process, later than ours, and (in seconds
    # after boot) about now, since the child has only just started.
    assert procs.start_time(pid) == stat.start_ticks
    ours = procs.start_time(os.getpid())
    assert ours is not None and stat.start_ticks >= ours
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(stat.start_ticks / os.sysconf("SC_CLK_TCK") - uptime) < TIMEOUT


def test_cmdline_of_another_program_does_not_match(sleeper: subprocess.Popen[bytes]) -> None:
    assert procs.cmdline(sleeper.pid) != ("sleep", "31")
    assert procs.cmdline(os.getpid()) != SLEEP_ARGV


def test_killed_and_reaped_child_is_gone(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    sleeper.kill()
    sleeper.wait(TIMEOUT)
    assert not procs.alive(pid)
    assert procs.read_stat(pid) is None
    assert procs.start_time(pid) is None
    assert procs.cmdline(pid) is None
    assert procs.cmdline_bytes(pid) is None


def test_unreaped_zombie_is_not_alive(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    os.kill(pid, signal.SIGKILL)  # not reaped: the pid stays as a zombie

    def is_zombie() -> bool:
        stat = procs.read_stat(pid)
        return stat is not None and stat.state == "Z"

    _until(is_zombie, "the zombie state")
    assert not procs.alive(pid)


def test_start_in_session_detaches_and_logs_both_streams(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_bytes(b"earlier line\n")
    argv = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 30"]
    proc = procs.start_in_session(argv, log, {"PATH": os.environ["PATH"]}, cwd=tmp_path)
    try:
        _until(lambda: procs.cmdline(proc.pid) == SLEEP_ARGV, "the shell to exec sleep")
        assert os.getsid(proc.pid) == proc.pid
        assert os.getpgid(proc.pid) == proc.pid
        assert os.readlink(f"/proc/{proc.pid}/cwd") == str(tmp_path)
        # Appended, not truncated; stdout and stderr both land in the log.
        assert log.read_text().splitlines() == ["earlier line", "to-stdout", "to-stderr"]
    finally:
        _end(proc)


def test_lab_inspect_by_cmdline_and_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    started = procs.start_time(pid)
    assert started is not None
    assert lab.inspect(pid, SLEEP_ARGV, started).liveness is lab.Liveness.RUNNING
    assert lab.inspect(pid, SLEEP_ARGV, None).liveness is lab.Liveness.RUNNING
    assert lab.inspect(pid, ("sleep", "31"), started).liveness is lab.Liveness.FOREIGN
    assert lab.inspect(pid, SLEEP_ARGV, started + 1).liveness is lab.Liveness.FOREIGN
    os.kill(pid, signal.SIGSTOP)
    _until(
        lambda: lab.inspect(pid, SLEEP_ARGV, started).liveness is lab.Liveness.STOPPED,
        "the stopped state",
    )
    sleeper.kill()
    sleeper.wait(TIMEOUT)
    assert lab.inspect(pid, SLEEP_ARGV, started).liveness is lab.Liveness.GONE


def test_existing_cmdline_is_text_and_none_once_ended(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    assert existing.cmdline(pid) == "sleep 30"
    assert existing.alive(pid)
    os.kill(pid, signal.SIGKILL)
    _until(lambda: existing.cmdline(pid) is None, "the zombie to read as ended")
    assert not existing.alive(pid)
    sleeper.wait(TIMEOUT)
    assert existing.cmdline(pid) is None
