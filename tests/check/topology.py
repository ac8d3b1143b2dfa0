"""A real lab topology on 127.0.60.0/24 for the check tests: three node emulators, the
built-in load balancer and the built-in DNS server, each a subprocess started with its
documented CLI (`rke2ha lab node`, `rke2ha lb serve`, `rke2ha dns serve`).

`LabProcesses` also implements the drill's `FaultInjector` the way the lab orchestration
will: kill = SIGKILL, freeze = SIGSTOP, restore = SIGCONT or a fresh process. Every
process is stopped by pid at teardown (SIGCONT first, so a frozen one can die).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rke2ha.check.result import CheckResult
from rke2ha.check.session import check_deployment_async, with_defaults
from rke2ha.check.target import CheckOptions
from rke2ha.specfile import load_spec

SUBNET = "127.0.60.0/24"
# Ports: 80/443/6443/9345/53 + 21000 on our own loopback addresses, clear of the others.
OFFSET = 21000
LB, DNS = "127.0.60.10", "127.0.60.53"
NODES = {"node-1": "127.0.60.11", "node-2": "127.0.60.12", "node-3": "127.0.60.13"}
HOSTNAME = "rancher.lab.rke2ha.test"
ADMIN_PORT = 8404  # plus the offset, like every port of the spec
START_TIMEOUT = 15.0


def lab_spec(offset: int, **load_balancer: object) -> dict[str, object]:
    return {
        "name": "lab",
        "hostname": HOSTNAME,
        "provider": "lab",
        "ingress": "nginx",
        "nodes": [{"name": name} for name in NODES],
        "load_balancer": {
            "layer": 4,
            "health": {"interval": "300ms", "timeout": "600ms", "rise": 2, "fall": 2},
            "admin": f"{LB}:{ADMIN_PORT}",
            **load_balancer,
        },
        "dns": {"provider": "builtin", "zone": "lab.rke2ha.test", "ttl": 5},
        "lab": {"subnet": SUBNET, "port_offset": offset},
    }


def write_spec(path: Path, document: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited before listening on {host}:{port}: {log.read_text()}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class LabProcesses:
    spec_file: Path
    offset: int
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    frozen: set[str] = field(default_factory=set)
    # Another topology (own subnet) passes its load balancer address and admin port.
    lb_host: str = LB
    admin_port: int = ADMIN_PORT

    def _spawn(self, key: str, *args: str) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{key}.out").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "rke2ha", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.spec_file.parent,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        out.close()
        self.procs[key] = proc
        return proc

    # ---- nodes ----

    def start_node(self, name: str, *extra: str) -> None:
        log = self.logs / f"{name}.out"
        log.unlink(missing_ok=True)
        self._spawn(
            name, "lab", "node", "-f", str(self.spec_file), "--name", name,
            "--port-offset", str(self.offset), *extra,
        )  # fmt: skip

    def wait_node(self, name: str) -> None:
        log = self.logs / f"{name}.out"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if log.exists() and '"event": "listening"' in log.read_text():
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()}")
            time.sleep(0.05)
        raise TimeoutError(f"{name} did not listen within {START_TIMEOUT}s")

    def restart_node(self, name: str) -> None:
        self.stop(name)
        self.start_node(name)
        self.wait_node(name)

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].send_signal(sig)

    # ---- load balancer and DNS ----

    def start_lb(self) -> None:
        proc = self._spawn(
            "lb", "lb", "serve", "-f", str(self.spec_file), "--port-offset", str(self.offset),
            "--access-log", "off",
        )  # fmt: skip
        log = self.logs / "lb.out"
        # the admin port moves with the offset, like every port of the spec
        _wait_for_port(self.lb_host, self.admin_port + self.offset, START_TIMEOUT, proc, log)
        _wait_for_port(self.lb_host, 443 + self.offset, START_TIMEOUT, proc, log)

    def start_dns(self, key: str, spec_file: Path, port: int) -> None:
        proc = self._spawn(key, "dns", "serve", "-f", str(spec_file), "--listen", f"{DNS}:{port}")
        deadline = time.monotonic() + START_TIMEOUT
        log = self.logs / f"{key}.out"
        while time.monotonic() < deadline:
            if log.exists() and "serving zone" in log.read_text():
                return
            if proc.poll() is not None:
                raise RuntimeError(f"dns {key} exited: {log.read_text()}")
            time.sleep(0.05)
        raise TimeoutError(f"dns {key} did not start: {log.read_text()}")

    def stop(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is None:
            return
        if key in self.frozen:
            proc.send_signal(signal.SIGCONT)
            self.frozen.discard(key)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for key in list(self.procs):
            self.stop(key)

    # ---- the drill's FaultInjector ----

    async def kill(self, node: str) -> None:
        proc = self.procs[node]
        proc.kill()
        await asyncio.to_thread(proc.wait, 5)

    async def freeze(self, node: str) -> None:
        self.procs[node].send_signal(signal.SIGSTOP)
        self.frozen.add(node)

    async def restore(self, node: str) -> None:
        proc = self.procs[node]
        if node in self.frozen:
            proc.send_signal(signal.SIGCONT)
            self.frozen.discard(node)
            return
        if proc.poll() is None:
            return
        self.start_node(node)
        await asyncio.to_thread(self.wait_node, node)


def health_token(spec_file: Path) -> Path:
    """The lab's health token (created by the first node emulator, mode 0600)."""
    from rke2ha.lab.material import health_token_file
    from rke2ha.specfile import load_spec

    return health_token_file(load_spec(spec_file))


def lab_ca(spec_file: Path) -> Path:
    return spec_file.parent / ".rke2ha" / "lab" / "pki" / "ca.crt"


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in document["checks"]}


def details(document: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["detail"] for c in document["checks"]}


def load_json(text: str) -> dict[str, Any]:
    document = json.loads(text)
    assert isinstance(document, dict)
    return document


# ---- running checks in-process ----


def run_checks(spec_file: Path, **options: object) -> list[CheckResult]:
    """One in-process check run (the library call `rke2ha check` makes)."""
    spec = load_spec(spec_file)
    opts = with_defaults(spec, CheckOptions(**options), OFFSET)  # type: ignore[arg-type]
    return asyncio.run(check_deployment_async(spec, opts)).results


def failing_ids(results: list[CheckResult]) -> set[str]:
    return {r.id for r in results if r.status == "fail"}


def wait_for(
    spec_file: Path,
    done: Callable[[list[CheckResult]], bool],
    within: float,
    **options: object,
) -> tuple[list[CheckResult], float]:
    """Check until `done(results)` or `within` seconds; the last results and the time."""
    start = time.monotonic()
    while True:
        results = run_checks(spec_file, **options)
        elapsed = time.monotonic() - start
        if done(results) or elapsed > within:
            return results, elapsed
        time.sleep(0.1)
