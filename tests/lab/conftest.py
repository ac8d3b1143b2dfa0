"""Fixtures for the lab tests: lab spec files, node emulators as real subprocesses, curl.

Everything listens on 127.0.40.0/24 (this area's loopback range) with port offset 20000,
so the node ports (20080, 20443, 26443, 29345) sit below the ephemeral range and clear of
other areas' tests. Every spawned process is stopped at teardown (thawed first if a test
froze it), killed if it does not exit in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO

OFFSET = 20_000
HOSTNAME = "rancher.lab.rke2ha.test"
HTTP, HTTPS, API, SUP = 80 + OFFSET, 443 + OFFSET, 6443 + OFFSET, 9345 + OFFSET
SPAWN_TIMEOUT = 10.0


def lab_spec(addresses: list[str], **overrides: Any) -> dict[str, Any]:
    """A lab spec with nodes node-1.. at `addresses`; `overrides` replace top-level keys."""
    spec: dict[str, Any] = {
        "name": "lab",
        "hostname": HOSTNAME,
        "provider": "lab",
        "ingress": "nginx",
        "nodes": [
            {"name": f"node-{index + 1}", "address": address}
            for index, address in enumerate(addresses)
        ],
        "dns": {"zone": "lab.rke2ha.test"},
        "lab": {"subnet": "127.0.40.0/24", "port_offset": OFFSET},
    }
    spec.update(overrides)
    return spec


def write_spec(directory: Path, spec: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lab.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class NodeProcess:
    """A running `rke2ha lab node` subprocess and what it announced."""

    name: str
    proc: subprocess.Popen[str]
    spawn_seconds: float
    announce: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    _partial: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return str(self.announce["address"])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def next_line(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next JSON event line on stdout (fails the test after `timeout`)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.proc.stdout.fileno(), False)
        try:
            while time.monotonic() < deadline:
                # Non-blocking: a busy machine may hand over half a line; keep it until
                # its newline arrives.
                self._partial += self.proc.stdout.readline()
                if self._partial.endswith("\n"):
                    line, self._partial = self._partial, ""
                    event: dict[str, Any] = json.loads(line)
                    self.lines.append(event)
                    return event
                time.sleep(0.01)
        finally:
            os.set_blocking(self.proc.stdout.fileno(), True)
        raise AssertionError(f"{self.name}: no event line within {timeout}s")

    def stop(self, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return int(self.proc.returncode)


def spawn_node(spec_file: Path, name: str, *extra: str) -> NodeProcess:
    """Start `rke2ha lab node` and wait for its `listening` line (measuring how long)."""
    args = [sys.executable, "-m", "rke2ha.commands.lab", "node", "--name", name]
    args += ["-f", str(spec_file)]
    args += ["--port-offset", str(OFFSET), *extra]
    started = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    node = NodeProcess(name, proc, 0.0, {})
    try:
        announce = node.next_line(SPAWN_TIMEOUT)
    except AssertionError:
        node.stop()
        assert proc.stderr is not None
        raise AssertionError(f"{name} did not start: {proc.stderr.read()}") from None
    node.spawn_seconds = time.monotonic() - started
    node.announce = announce
    assert announce["event"] == "listening", announce
    return node


@pytest.fixture
def node_processes() -> Iterator[Callable[..., NodeProcess]]:
    """Spawn node emulators for one test; all of them are stopped afterwards."""
    started: list[NodeProcess] = []

    def spawn(spec_file: Path, name: str, *extra: str) -> NodeProcess:
        node = spawn_node(spec_file, name, *extra)
        started.append(node)
        return node

    yield spawn
    for node in started:
        node.stop()


@dataclass(frozen=True)
class CurlResult:
    exit_code: int
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.body.decode()


def curl(
    url: str,
    *,
    cacert: Path | None = None,
    resolve: str | None = None,
    headers: tuple[str, ...] = (),
    max_time: float = 5.0,
    extra: tuple[str, ...] = (),
) -> CurlResult:
    """One request with the real curl binary; header names lower-cased (last one wins)."""
    with tempfile.TemporaryDirectory(prefix="rke2ha-lab-curl-") as tmp:
        head, body = Path(tmp) / "head", Path(tmp) / "body"
        args = ["curl", "-sS", "--noproxy", "*", "--max-time", str(max_time)]
        args += ["-D", str(head), "-o", str(body), "-w", "%{http_code}"]
        if cacert is not None:
            args += ["--cacert", str(cacert)]
        if resolve is not None:
            args += ["--resolve", resolve]
        for header in headers:
            args += ["-H", header]
        proc = subprocess.run(
            [*args, *extra, url], capture_output=True, text=True, timeout=max_time + 5
        )
        parsed: dict[str, str] = {}
        if head.exists():
            for line in head.read_text(errors="replace").splitlines()[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    parsed[name.strip().lower()] = value.strip()
        return CurlResult(
            proc.returncode,
            int(proc.stdout or 0),
            parsed,
            body.read_bytes() if body.exists() else b"",
            proc.stderr,
        )
