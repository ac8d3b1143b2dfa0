"""Lab processes on this machine: start detached, recognise our own, stop for good.

A lab outlives the `up` that started it (`--detach`, or a crash of `up`), so each process
runs in its own session (no terminal signal reaches it) with its output in a log file,
and the state file keeps its pid and command line. A pid alone proves nothing after a
crash or a reboot: the kernel reuses pids. `inspect` therefore calls a pid ours only
while `/proc/<pid>/cmdline` still reads the recorded command line and its start time is
the recorded one; anything else is stale state, cleaned without touching that process.

Stopping is bounded: SIGCONT first (a frozen process cannot act on SIGTERM), SIGTERM to
the process group, then SIGKILL after `STOP_TIMEOUT`. A process that is our child is
reaped, so no zombie outlives `down` in a long-running caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from rke2ha import procs

# The /proc readers live in rke2ha.procs (the existing provider uses them too); these
# names stay importable from here for the lab's callers and tests.
from rke2ha.procs import cmdline as cmdline
from rke2ha.procs import start_time as start_time

STOP_TIMEOUT = 5.0
_POLL = 0.02


class Liveness(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # SIGSTOP: frozen
    GONE = "gone"  # no such process (or a zombie)
    FOREIGN = "foreign"  # the pid now belongs to another program: stale state


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    liveness: Liveness

    @property
    def ours(self) -> bool:
        return self.liveness in (Liveness.RUNNING, Liveness.STOPPED)


# Processes this Python process started: kept so they can be reaped (no zombie stays in a
# long-running caller such as a foreground `up` or a test), forgotten once they end.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def inspect(pid: int, argv: Sequence[str], started: int | None) -> ProcessInfo:
    """Is `pid` still the process we started with `argv` (at `started` ticks)?"""
    stat = procs.read_stat(pid)
    if stat is None:
        return ProcessInfo(pid, Liveness.GONE)
    if stat.state in procs.ENDED_STATES:
        _reap(pid)
        return ProcessInfo(pid, Liveness.GONE)
    if cmdline(pid) != tuple(argv) or (started is not None and stat.start_ticks != started):
        return ProcessInfo(pid, Liveness.FOREIGN)
    return ProcessInfo(pid, Liveness.STOPPED if stat.state in ("T", "t") else Liveness.RUNNING)


def spawn(argv: Sequence[str], log_file: Path, cwd: Path) -> tuple[int, int | None]:
    """Start `argv` in its own session with stdout+stderr appended to `log_file`.

    Returns (pid, start time ticks). The caller waits for readiness separately.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = procs.start_in_session(argv, log_file, env, cwd=cwd)
    _children[proc.pid] = proc
    return proc.pid, start_time(proc.pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # start_new_session made the process its group's leader: the group holds any
    # worker it forked too.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def send(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to the process (and its group)."""
    _signal_group(pid, sig)


def wait_gone(pid: int, argv: Sequence[str], started: int | None, timeout: float) -> bool:
    """True once `pid` is no longer our process (exited and reaped), within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if not inspect(pid, argv, started).ours:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)


def stop(pid: int, argv: Sequence[str], started: int | None, timeout: float = STOP_TIMEOUT) -> str:
    """Stop our process `pid` for good; returns how ("already gone", "SIGTERM", "SIGKILL")."""
    if not inspect(pid, argv, started).ours:
        return "already gone"
    _signal_group(pid, signal.SIGCONT)
    _signal_group(pid, signal.SIGTERM)
    if wait_gone(pid, argv, started, timeout):
        return "SIGTERM"
    _signal_group(pid, signal.SIGKILL)
    wait_gone(pid, argv, started, timeout)
    return "SIGKILL"


def kill(pid: int, argv: Sequence[str], started: int | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGKILL (a crash, as the drill wants it) and wait until the process is gone."""
    if inspect(pid, argv, started).ours:
        _signal_group(pid, signal.SIGKILL)
        wait_gone(pid, argv, started, timeout)


def find_by_cmdline(argv: Sequence[str]) -> list[int]:
    """Pids whose command line is exactly `argv` (an orphan of an `up` that crashed)."""
    wanted = tuple(argv)
    found = []
    for entry in Path("/proc").iterdir():
        pid = int(entry.name) if entry.name.isdigit() else 0
        if pid and pid != os.getpid() and cmdline(pid) == wanted:
            found.append(pid)
    return found


def stop_all(targets: Sequence[tuple[int, Sequence[str], int | None]]) -> None:
    """Stop several processes at once: signal them all, then wait for each (bounded)."""
    live = [t for t in targets if inspect(*t).ours]
    for pid, _, _ in live:
        _signal_group(pid, signal.SIGCONT)
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for pid, argv, started in live:
        if not wait_gone(pid, argv, started, max(0.0, deadline - time.monotonic())):
            _signal_group(pid, signal.SIGKILL)
            wait_gone(pid, argv, started, STOP_TIMEOUT)
