"""Fixtures for the load balancer tests: the real `rke2ha lb serve` process, backend
servers (in-process asyncio servers, or processes from backend_server.py that a test may
freeze), a test TLS certificate. Everything lives on 127.0.30.0/24 with ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.certs import write_self_signed
from tests.support.procs import stop, wait_port

REPO = Path(__file__).resolve().parents[2]
LB_HOST = "127.0.30.10"
NODE_HOSTS = ("127.0.30.11", "127.0.30.12", "127.0.30.13")
BACKEND_SERVER = Path(__file__).with_name("backend_server.py")


def free_port(host: str = "127.0.30.10") -> int:
    """A port free on the LB address and on every node address a moment ago."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        try:
            for other in (LB_HOST, *NODE_HOSTS):
                with socket.socket() as probe:
                    probe.bind((other, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


@dataclass
class LbProcess:
    popen: subprocess.Popen[bytes]
    log_path: Path
    admin: str | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> Any:
        assert self.admin
        with urllib.request.urlopen(f"http://{self.admin}/status", timeout=3) as response:
            return json.loads(response.read())

    def get(self, path: str) -> str:
        assert self.admin
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=3) as response:
            return str(response.read().decode())

    def backend(self, address: str, frontend: int = 0) -> Any:
        for backend in self.status()["frontends"][frontend]["backends"]:
            if backend["address"] == address:
                return backend
        raise AssertionError(f"no backend {address} in /status")

    def wait_state(
        self, address: str, states: set[str], timeout: float, frontend: int = 0
    ) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.backend(address, frontend)["state"] in states:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{address} not {states} after {timeout}s: {self.backend(address)}")

    def stop(self) -> None:
        stop(self.popen, timeout=15)


@pytest.fixture
def start_lb(tmp_path: Path) -> Iterator[Any]:
    started: list[LbProcess] = []

    def start(*args: str, listen: tuple[str, int] | None, admin: str | None = None) -> LbProcess:
        log_path = tmp_path / f"lb-{len(started)}.log"
        argv = [sys.executable, "-m", "rke2ha", "lb", "serve", *args]
        if admin:
            argv += ["--admin", admin]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with log_path.open("wb") as log:
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        proc = LbProcess(popen, log_path, admin)
        started.append(proc)
        deadline = time.monotonic() + 20
        while "listening on" not in proc.log():
            assert popen.poll() is None, proc.log()
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.02)
        if listen is not None:
            wait_port(*listen)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def admin_address() -> str:
    return f"{LB_HOST}:{free_port()}"


@dataclass
class BackendProcess:
    popen: subprocess.Popen[str]

    def freeze(self) -> None:
        os.kill(self.popen.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.popen.pid, signal.SIGCONT)


@pytest.fixture
def backend_process() -> Iterator[Any]:
    started: list[BackendProcess] = []

    def start(*args: str) -> BackendProcess:
        popen = subprocess.Popen(
            [sys.executable, str(BACKEND_SERVER), *args], stdout=subprocess.PIPE, text=True
        )
        assert popen.stdout is not None
        assert popen.stdout.readline().strip() == "ready"
        proc = BackendProcess(popen)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            proc.thaw()
        stop(proc.popen, timeout=5)


# ---- in-process asyncio backends ------------------------------------------------------------


@dataclass
class EchoBackend:
    """`hello <host>\\n`, then echo; `kill()` refuses new clients and resets the others.
    `accepted` counts every connection, health checks included (a TCP check connects and
    closes); `served` only those that sent data, i.e. client traffic."""

    host: str
    port: int
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    accepted: int = 0
    served: int = 0

    async def start(self) -> EchoBackend:
        self.server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.add(writer)
        writer.write(f"hello {self.host}\n".encode())
        first = True
        try:
            while data := await reader.read(65536):
                if first:
                    self.served += 1
                    first = False
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def kill(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()


async def echo_backends(port: int, hosts: tuple[str, ...] = NODE_HOSTS) -> list[EchoBackend]:
    return [await EchoBackend(h, port).start() for h in hosts]


async def connect_hello(
    host: str, port: int
) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect through the LB; return the greeting backend's host and the streams."""
    reader, writer = await asyncio.open_connection(host, port)
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line.startswith(b"hello "), line
    return line.split()[1].decode(), reader, writer


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> None:
    writer.write(data)
    echoed = await asyncio.wait_for(reader.readexactly(len(data)), 5)
    assert echoed == data


# ---- TLS ----------------------------------------------------------------------------------


@pytest.fixture
def test_cert(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(
        tmp_path / "node.crt",
        tmp_path / "node.key",
        "rke2ha-test-node",
        backdate=datetime.timedelta(minutes=5),
        valid_for=datetime.timedelta(days=1),
    )
