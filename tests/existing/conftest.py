"""Fixtures for provider existing: three node emulators as the "existing" servers, spec
files, the CLI, curl, and a real BIND primary for rfc2136.

Everything sits on 127.0.80.0/24 (this area's loopback range; the builtin layer 7 tests
have their own, 127.0.81.0/24): nodes .11-.13 on the real ports (80, 443, 6443, 9345; the
emulators run with offset 0, which needs root), the load balancer on .10 with its admin
page on .10:8404. The emulators live for the whole module;
every engine a test starts is brought down at teardown, and any process still running on
a test's state folder is stopped there too, so nothing is left behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO
from tests.support.named import Named, running_named
from tests.support.procs import stop
from tests.support.specs import merge

from rke2ha.providers import lifecycle
from rke2ha.providers.base import ProviderOptions
from rke2ha.specfile import load_spec

HOSTNAME = "rancher.existing.rke2ha.test"
ZONE = "existing.rke2ha.test"
LB = "127.0.80.10"
NODES = ["127.0.80.11", "127.0.80.12", "127.0.80.13"]
ADMIN = f"{LB}:8404"
SPAWN_TIMEOUT = 15.0
TSIG_SECRET = base64.b64encode(b"rke2ha-existing-tsig-secret-32b!").decode()


def existing_spec(engine: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "onprem",
        "hostname": HOSTNAME,
        "provider": "existing",
        "ingress": "nginx",
        "nodes": [{"name": f"node-{i + 1}", "address": a} for i, a in enumerate(NODES)],
        "load_balancer": {
            "engine": engine,
            "address": LB,
            "admin": ADMIN,
            # The sandbox's open-file limit (20000) is below what HAProxy wants for the
            # default 10000 connections; a real host raises it in the service unit.
            "max_connections": 2000,
            "health": {"interval": "500ms", "rise": 1, "fall": 2},
        },
        "dns": {"provider": "manual", "zone": ZONE},
    }
    return merge(spec, extra)


@dataclass
class Emulators:
    ca: Path
    token: Path  # the lab's health token: 6443 /readyz answers 200 to it, 401 to others
    procs: list[subprocess.Popen[str]]


def spawn_node(spec_file: Path, name: str) -> subprocess.Popen[str]:
    """Lab node emulator `name` of the lab spec `spec_file`, on the real ports, once listening."""
    args = [sys.executable, "-m", "rke2ha.commands.lab", "node", "--name", name]
    args += ["-f", str(spec_file), "--port-offset", "0"]
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + SPAWN_TIMEOUT
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line and json.loads(line).get("event") == "listening":
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait(5)
    raise AssertionError(f"{name} did not start: {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    """Three RKE2 server emulators on 127.0.80.11-13, real ports, one lab CA."""
    if os.geteuid() != 0:
        pytest.skip("the emulators and engines bind ports 80/443 on 127.0.80.x: needs root")
    directory = tmp_path_factory.mktemp("existing-nodes")
    with lab_nodes(directory, NODES, "127.0.80.0/24") as procs:
        state = directory / ".rke2ha"
        yield Emulators(
            state / "lab" / "pki" / "ca.crt", state / "secrets" / "onprem-health-token", procs
        )


@contextlib.contextmanager
def lab_nodes(
    directory: Path, addresses: list[str], subnet: str, **extra: Any
) -> Iterator[list[subprocess.Popen[str]]]:
    """Node emulators of a lab spec written to `directory` (one per address, real ports);
    `extra` goes into the spec (e.g. rancher settings). Stopped on exit."""
    lab = {
        "name": "onprem",
        "hostname": HOSTNAME,
        "provider": "lab",
        "ingress": "nginx",
        "nodes": [{"name": f"node-{i + 1}", "address": a} for i, a in enumerate(addresses)],
        "dns": {"zone": ZONE},
        "lab": {"subnet": subnet},
        **extra,
    }
    spec_file = directory / "lab.yaml"
    spec_file.write_text(yaml.safe_dump(lab))
    procs: list[subprocess.Popen[str]] = []
    try:
        for index in range(len(addresses)):
            procs.append(spawn_node(spec_file, f"node-{index + 1}"))
        yield procs
    finally:
        for proc in procs:
            stop(proc, timeout=5)


def keepalive_request(sock: socket.socket, path: str = "/healthz") -> bytes:
    """One HTTP/1.1 request on an open connection to the load balancer; the response head.
    Host is the load balancer's address, so the node's ingress answers from its catch-all
    server (with Rancher installed, the Rancher Host on port 80 is a 308 to https)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {LB}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed by the load balancer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, "connection closed in the middle of a body"
        body += chunk
    return head


@dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str


def cli(*args: str, timeout: float = 60) -> Cli:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "rke2ha", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return Cli(done.returncode, done.stdout, done.stderr)


@dataclass
class Deployment:
    """One test's spec folder, with helpers to read what `up` recorded."""

    directory: Path

    @property
    def spec_file(self) -> Path:
        return self.directory / "rke2ha.yaml"

    def write(self, spec: dict[str, Any]) -> Path:
        self.spec_file.write_text(yaml.safe_dump(spec))
        return self.spec_file

    def cli(self, *args: str) -> Cli:
        return cli(args[0], "-f", str(self.spec_file), *args[1:])

    def plan_lines(self) -> list[str]:
        """`plan` in-process (no interpreter start): one `symbol address` per change."""
        result = lifecycle.plan(load_spec(self.spec_file), ProviderOptions())
        return [f"{c.symbol} {c.address}" for c in result.plan.changes]

    @property
    def state_file(self) -> Path:
        return self.directory / ".rke2ha" / "onprem.state.json"

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def engine_pid(self) -> int:
        return int(self.state()["resources"]["load_balancer.engine"]["attrs"]["pid"])

    def our_processes(self) -> list[int]:
        """Running (not zombie) processes whose command line names this folder's state."""
        marker = str(self.directory / ".rke2ha").encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if marker in cmdline and stat.rpartition(")")[2].split()[:1] != ["Z"]:
                found.append(int(entry.name))
        return found


@contextlib.contextmanager
def torn_down(folder: Path) -> Iterator[Deployment]:
    """A deployment in `folder`; afterwards `down --yes`, then any straggler of ours killed."""
    deployed = Deployment(folder)
    yield deployed
    if deployed.state_file.exists():
        deployed.cli("down", "--yes")
    for pid in deployed.our_processes():
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def deployment(tmp_path: Path, emulators: Emulators) -> Iterator[Deployment]:
    """A spec folder, torn down after the test."""
    with torn_down(tmp_path) as deployed:
        yield deployed


def curl(url: str, *args: str, max_time: float = 5.0) -> subprocess.CompletedProcess[str]:
    """The real curl; stdout is `%{http_code} %{redirect_url}` then the body."""
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", str(max_time), *args, url],
        capture_output=True,
        text=True,
        timeout=max_time + 5,
    )


def port_80_redirect(lb: str = LB) -> subprocess.CompletedProcess[str]:
    """curl http://HOSTNAME/ through the load balancer's 80; stdout `<code> <location>`."""
    return curl(
        f"http://{HOSTNAME}/",
        "--resolve",
        f"{HOSTNAME}:80:{lb}",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
    )


def https_get(ca: Path, lb: str = LB, path: str = "/ping") -> tuple[int, str, str]:
    """curl https://HOSTNAME<path> through the load balancer at `lb`, verified against `ca`:
    status, the node that answered, body. AssertionError when TLS or the request fails."""
    done = curl(
        f"https://{HOSTNAME}{path}",
        "--cacert",
        str(ca),
        "--resolve",
        f"{HOSTNAME}:443:{lb}",
        "-D",
        "-",
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lowered = head.lower()
    node = lowered.split("x-rke2ha-node:")[1].split()[0] if "x-rke2ha-node:" in lowered else ""
    return int(head.split()[1]), node, body


# ---- BIND --------------------------------------------------------------------------------


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Named]:
    """A real BIND primary for the test zone with TSIG key rke2ha-key., on 127.0.0.1."""
    with running_named(tmp_path, ZONE, TSIG_SECRET) as server:
        yield server
