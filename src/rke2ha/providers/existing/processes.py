"""The engine processes: run the config check, start, signal, watch and stop. The I/O.

A pid alone proves nothing (pids are reused), so every process this module acts on is
first matched by its command line against the state folder's config path
(`engines.is_our_process`); a process that does not match is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from rke2ha import procs
from rke2ha.errors import InvalidError

CHECK_TIMEOUT = 30.0
POLL = 0.05


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> str | None:
    """The process's command line with NULs as spaces; None when it is gone or a zombie.

    Text, not an argument tuple: nginx rewrites its process title into the argv area, so
    `engines.is_our_process` matches on the text.
    """
    if not procs.alive(pid):
        return None
    raw = procs.cmdline_bytes(pid)
    if raw is None:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    return cmdline(pid) is not None


def children(pid: int) -> set[int]:
    """Direct children of `pid` (HAProxy and nginx workers of a master)."""
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


def _run(argv: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        command = " ".join(argv)
        raise InvalidError(f"{what}: `{command}` did not finish in {CHECK_TIMEOUT:g}s") from None


def run_check(argv: list[str], env: dict[str, str], what: str) -> None:
    """Run the engine's config check; InvalidError with the binary's own message if it fails."""
    done = _run(argv, env, what)
    if done.returncode != 0:
        message = (done.stderr + done.stdout).strip() or f"exit status {done.returncode}"
        raise InvalidError(
            f"{what} rejects the rendered config (nothing was started or reloaded):\n{message}"
        )


def start_daemon(argv: list[str], env: dict[str, str], pidfile: Path, what: str) -> int:
    """Run a self-daemonizing engine; its master pid from the pid file it writes."""
    pidfile.unlink(missing_ok=True)
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise InvalidError(
            f"{what}: `{' '.join(argv)}` did not return in {CHECK_TIMEOUT:g}s"
        ) from None
    if done.returncode != 0:
        message = (done.stderr + done.stdout).strip() or f"exit status {done.returncode}"
        raise InvalidError(f"{what} did not start:\n{message}")
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pid = read_pid(pidfile)
        if pid is not None and alive(pid):
            return pid
        time.sleep(POLL)
    raise InvalidError(f"{what} started but wrote no pid to {pidfile}: {done.stderr.strip()}")


def spawn_detached(argv: list[str], env: dict[str, str], log: Path, pidfile: Path) -> int:
    """Start a foreground engine in its own session, output to `log`; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = procs.start_in_session(argv, log, env)
    pidfile.write_text(f"{proc.pid}\n", encoding="ascii")
    return proc.pid


def wait_listening(pid: int, host: str, port: int, timeout: float, log: Path, what: str) -> None:
    """Until `host:port` accepts a connection; InvalidError (with the log) if `pid` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise InvalidError(f"{what} exited while starting:\n{_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(POLL * 2)
    raise InvalidError(f"{what} is running but {host}:{port} does not accept after {timeout:g}s")


def wait_new_children(pid: int, before: set[int], timeout: float) -> bool:
    """True once `pid` has a child it did not have before (a reloaded worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children(pid) - before:
            return True
        time.sleep(POLL)
    return False


# nginx's worker, told to quit gracefully (a reload), sets this title and closes its
# listening sockets in the same step (src/os/unix/ngx_process_cycle.c,
# ngx_worker_process_cycle); it then only finishes the connections it has.
NGINX_SHUTTING_DOWN = "worker process is shutting down"


def wait_stopped_accepting(pids: set[int], timeout: float) -> bool:
    """True once every nginx worker in `pids` has exited or is shutting down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        titles = [cmdline(pid) for pid in pids]
        if all(t is None or NGINX_SHUTTING_DOWN in t for t in titles):
            return True
        time.sleep(POLL)
    return False


def wait_log_line(log: Path, offset: int, needles: tuple[str, ...], timeout: float) -> str | None:
    """The first line written to `log` after `offset` that contains one of `needles`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with log.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if any(needle in line for needle in needles):
                return line
        time.sleep(POLL)
    return None


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def stop(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to `timeout`, then SIGKILL; True when it ended before the kill."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(POLL)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5.0
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)
    return False
