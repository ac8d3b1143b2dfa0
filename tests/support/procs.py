"""Child processes in tests: wait until one listens, stop one and make sure it is gone."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from typing import Any


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0, kill_timeout: float = 5.0) -> None:
    """SIGTERM, wait up to `timeout`; then SIGKILL and reap, so no process outlives a test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_timeout)


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once a TCP connect to host:port succeeds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {host}:{port}")
