"""Processes on this machine as /proc shows them, and starting one in a session of its own.

Shared by the providers that run processes here (lab, existing). A pid alone proves
nothing: the kernel reuses pids after an exit, a crash or a reboot. So callers judge a pid
by what /proc says about it now: its state (a zombie has ended, whatever its pid), its
start time (a reused pid has another) and its command line. Every reader returns None when
the process is gone or its entry cannot be read, so a caller never signals what it cannot
identify.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Zombie and dead: the process has ended; only its pid is left until it is reaped.
ENDED_STATES = frozenset({"Z", "X"})


@dataclass(frozen=True)
class ProcStat:
    """The two fields of /proc/<pid>/stat that identify a process's life."""

    state: str  # one letter: R, S, D, T (stopped), Z (zombie), ...
    start_ticks: int  # start time in clock ticks after boot


def read_stat(pid: int) -> ProcStat | None:
    """State and start time of `pid`; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    # What follows starts at field 3 (state); the start time is field 22.
    fields = text.rpartition(")")[2].split()
    return ProcStat(state=fields[0], start_ticks=int(fields[19]))


def start_time(pid: int) -> int | None:
    stat = read_stat(pid)
    return None if stat is None else stat.start_ticks


def alive(pid: int) -> bool:
    """Does `pid` exist and has it not ended (a zombie counts as ended)?"""
    stat = read_stat(pid)
    return stat is not None and stat.state not in ENDED_STATES


def cmdline_bytes(pid: int) -> bytes | None:
    """/proc/<pid>/cmdline as the kernel gives it (NUL-separated); None when gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def cmdline(pid: int) -> tuple[str, ...] | None:
    """The process's arguments (empty ones dropped); None when it is gone."""
    raw = cmdline_bytes(pid)
    if raw is None:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def start_in_session(
    argv: Sequence[str], log_file: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` detached: its own session, stdout+stderr appended to `log_file`.

    Its own session means no terminal signal (Ctrl-C of the caller) reaches it and it
    leads its own process group, so signalling the group reaches any worker it forks.
    The caller creates the log folder (with the mode it wants) and keeps or drops the
    Popen (keeping it lets the caller reap the process).
    """
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
