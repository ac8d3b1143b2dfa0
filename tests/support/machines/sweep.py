"""Finding and removing what a test-machine session leaves behind.

Every session holds an exclusive flock on `/run/rke2ha-test/<prefix>.lock` while it lives.
A prefix whose namespaces, processes or directory exist but whose lock nobody holds belongs
to a session that crashed (SIGKILL, power loss): `sweep` removes it. A live session of
another pytest process is never touched."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.machines.network import NETNS_DIR, delete_netns

PREFIX_RE = re.compile(r"^(r2t[0-9a-f]{6})-")
LOCK_DIR = Path("/run/rke2ha-test")
SESSIONS_DIR = Path("/var/tmp/rke2ha-test")


def new_prefix() -> str:
    return "r2t" + os.urandom(3).hex()


@dataclass
class Leftovers:
    """What exists of one session's prefix: empty means fully cleaned up."""

    netns: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    directory: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.netns or self.processes or self.mounts or self.directory)

    def describe(self) -> str:
        parts = []
        if self.netns:
            parts.append(f"network namespaces {self.netns}")
        if self.processes:
            parts.append(f"processes {self.processes}")
        if self.mounts:
            parts.append(f"mounts {self.mounts}")
        if self.directory:
            parts.append(f"directory {self.directory}")
        return ", ".join(parts) or "nothing"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _net_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def find_leftovers(prefix: str) -> Leftovers:
    """The namespaces, processes (nspawn by its --machine name, anything inside the
    session's namespaces), host mounts and directory of session `prefix`."""
    found = Leftovers()
    if NETNS_DIR.is_dir():
        found.netns = sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix + "-"))
    inodes = set()
    for name in found.netns:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(NETNS_DIR / name).st_ino)
    own = os.getpid()
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == own:
            continue
        argv = _cmdline(pid)
        if any(arg.startswith(f"--machine={prefix}-") for arg in argv) or (
            inodes and _net_inode(pid) in inodes
        ):
            found.processes.append(pid)
    session_dir = SESSIONS_DIR / prefix
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(f"{session_dir}/") or f"/{prefix}-" in point:
                found.mounts.append(point)
    if session_dir.exists():
        found.directory = session_dir
    return found


def remove(prefix: str, leftovers: Leftovers | None = None, timeout: float = 15.0) -> None:
    """SIGKILL the session's processes (a machine's PID 1 takes its whole machine with it),
    then delete its namespaces, mounts and directory."""
    found = leftovers or find_leftovers(prefix)
    for pid in found.processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found.processes):
        time.sleep(0.05)
    for name in found.netns:
        delete_netns(name)
    for point in sorted(found.mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    if found.directory is not None:
        shutil.rmtree(found.directory, ignore_errors=True)


def _held(prefix: str) -> bool:
    lock = LOCK_DIR / f"{prefix}.lock"
    try:
        handle = lock.open("a")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def stale_prefixes() -> list[str]:
    """Prefixes with something left on this machine and no live session holding them."""
    seen: set[str] = set()
    if NETNS_DIR.is_dir():
        for name in os.listdir(NETNS_DIR):
            if m := PREFIX_RE.match(name):
                seen.add(m.group(1))
    if SESSIONS_DIR.is_dir():
        for name in os.listdir(SESSIONS_DIR):
            if m := PREFIX_RE.match(name + "-"):
                seen.add(m.group(1))
    if LOCK_DIR.is_dir():
        for name in os.listdir(LOCK_DIR):
            if m := PREFIX_RE.match(name.removesuffix(".lock") + "-"):
                seen.add(m.group(1))
    return sorted(p for p in seen if not _held(p))


def sweep() -> list[str]:
    """Remove every crashed session's leftovers; returns the prefixes swept."""
    swept = stale_prefixes()
    for prefix in swept:
        remove(prefix)
        with contextlib.suppress(FileNotFoundError):
            (LOCK_DIR / f"{prefix}.lock").unlink()
    return swept
