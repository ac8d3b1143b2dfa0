"""Helpers for the lab tests: a real lab on 127.0.70.0/24, driven with the CLI as a user does.

Every lab here runs real processes (three node emulators, the built-in load balancer and
DNS server) started by `rke2ha up`, and is checked with `rke2ha check`. Traffic stays on
loopback (127.0.70.x). Each module's lab is torn down at the end, and the teardown asserts
that no lab process (found by the spec path in `/proc/*/cmdline`) and no listening
socket on 127.0.70.x is left behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUBNET_PREFIX = "127.0.70."
SUBNET = "127.0.70.0/24"
LB = "127.0.70.10"
DNS = "127.0.70.53"
NODES = ("node-1", "node-2", "node-3")
OFFSET = 30000
ADMIN_PORT = 8404 + OFFSET  # the lab's default: its own LB address, 8404 + the offset
HOSTNAME = "rancher.lab.rke2ha.test"
CLI_TIMEOUT = 90.0
NODE_PORTS = (80, 443, 6443, 9345)


def lab_spec(offset: int = OFFSET, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "lab",
        "hostname": HOSTNAME,
        "provider": "lab",
        "ingress": "nginx",
        "nodes": [{"name": name} for name in NODES],
        "load_balancer": {
            "layer": 4,
            "health": {"interval": "300ms", "timeout": "300ms", "rise": 2, "fall": 2},
        },
        "dns": {"provider": "builtin", "zone": "lab.rke2ha.test", "ttl": 5},
        "lab": {"subnet": SUBNET, "port_offset": offset},
    }
    document.update(overrides)
    return document


def write_spec(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        document = json.loads(self.out)
        assert isinstance(document, dict)
        return document


# A user's process as root can start one: uid 0 but no capability at all (capabilities(7)), so
# it cannot bind ports below 1024, bypass file modes or touch another user's processes. Not
# another uid: that user could not run a python under /root (this machine's) or a checkout in
# a folder only its owner may enter.
NO_CAPABILITIES = ("setpriv", "--bounding-set=-all", "--inh-caps=-all")


def rke2ha(
    *args: str,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
    prefix: tuple[str, ...] = (),
) -> Run:
    """`rke2ha ARGS...` as a subprocess, the way a user runs it (`prefix`: e.g.
    NO_CAPABILITIES, as an unprivileged user)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "rke2ha", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def lab_pids(spec_file: Path) -> list[int]:
    """Pids of processes whose command line names `spec_file` (the lab's processes)."""
    needle = str(spec_file.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in raw and stat.rpartition(")")[2].split()[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _hex_ip(value: str) -> str:
    return socket.inet_ntoa(bytes.fromhex(value)[::-1])


def listening_sockets(prefix: str = SUBNET_PREFIX) -> list[str]:
    """`proto host:port` of every listening TCP / bound UDP socket on addresses `prefix`*."""
    found = []
    for proto, listen_state in (("tcp", "0A"), ("udp", "07")):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            host_hex, port_hex = fields[1].split(":")
            host = _hex_ip(host_hex)
            if fields[3] == listen_state and host.startswith(prefix):
                found.append(f"{proto} {host}:{int(port_hex, 16)}")
    return found


def failing(document: dict[str, Any]) -> set[str]:
    return {c["id"] for c in document["checks"] if c["status"] == "fail"}


def check(spec_file: Path, *extra: str, offset: int | None = OFFSET) -> tuple[int, dict[str, Any]]:
    args = ["check", "-f", str(spec_file), "--json", *extra]
    if offset is not None:
        args += ["--port-offset", str(offset)]
    run = rke2ha(*args)
    assert run.code in (0, 1), run.err
    return run.code, run.json()


def wait_until(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s")


def lab_status(spec_file: Path) -> dict[str, Any]:
    run = rke2ha("lab", "status", "-f", str(spec_file), "--json")
    assert run.code in (0, 1), run.err
    return run.json()


def rotation(spec_file: Path, node: str) -> str:
    """The load balancer's view of `node`: "all ports", "none" or the ports it serves."""
    from rke2ha.providers.lab.provider import LabProvider
    from rke2ha.providers.lab.status import collect
    from rke2ha.specfile import load_spec

    spec = load_spec(spec_file)
    status = collect(spec, LabProvider(spec).topology)
    return next(c.rotation for c in status.components if c.name == node)


def all_in_rotation(spec_file: Path) -> bool:
    """Every lab process runs and the load balancer sends every node traffic on every port
    (read in-process: polled often, a CLI call per poll would be slow)."""
    from rke2ha.providers.lab.provider import LabProvider
    from rke2ha.providers.lab.status import collect
    from rke2ha.specfile import load_spec

    spec = load_spec(spec_file)
    status = collect(spec, LabProvider(spec).topology)
    return status.all_up and all(
        c.rotation == "all ports" for c in status.components if c.kind == "node-emulator"
    )


def up(
    spec_file: Path, *extra: str, offset: int | None = OFFSET, prefix: tuple[str, ...] = ()
) -> Run:
    args = ["up", "-f", str(spec_file), "--detach", "--json", *extra]
    if offset is not None:
        args += ["--port-offset", str(offset)]
    return rke2ha(*args, prefix=prefix)


def down(spec_file: Path, prefix: tuple[str, ...] = ()) -> Run:
    return rke2ha("down", "-f", str(spec_file), "--json", prefix=prefix)


def assert_nothing_left(spec_file: Path, prefix: str = SUBNET_PREFIX) -> None:
    wait_until(lambda: not lab_pids(spec_file), 10, "no lab process left")
    assert lab_pids(spec_file) == []
    assert listening_sockets(prefix) == []
