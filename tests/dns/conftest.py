"""Fixtures for the DNS tests: spec files, the built-in server as a real subprocess, `dig`,
a real BIND `named` with a TSIG key, and moto's Route 53/ELB server. Everything listens on
127.0.20.0/24 (this area's loopback range) on ephemeral ports and is stopped at teardown."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO, free_port
from tests.support.named import Named, running_named, wait_until_answers
from tests.support.procs import stop
from tests.support.specs import merge

SERVER_HOST = "127.0.20.1"
MOTO_HOST = "127.0.20.3"
LB_HOSTS = [f"127.0.20.{i}" for i in range(10, 60)]

TSIG_SECRET = base64.b64encode(b"rke2ha-test-tsig-secret-32-bytes").decode()
WRONG_SECRET = base64.b64encode(b"this-is-not-the-servers-secret!!").decode()

BASE_SPEC: dict[str, Any] = {
    "name": "prod",
    "hostname": "rancher.example.com",
    "provider": "existing",
    "nodes": [{"name": f"node-{i}", "address": f"127.0.20.{100 + i}"} for i in (1, 2, 3)],
    "load_balancer": {"address": "127.0.20.10"},
    "dns": {"zone": "example.com", "ttl": 60},
}


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write BASE_SPEC merged with `extra` to tmp_path/<name> and return its path."""

    def write(extra: dict[str, Any] | None = None, name: str = "rke2ha.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merge(BASE_SPEC, extra or {})))
        return path

    return write


def cli_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", **extra)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    host: str
    port: int

    def stop(self) -> str:
        stop(self.proc, timeout=10)
        return self.proc.stderr.read() if self.proc.stderr else ""


def serve_argv(spec: Path, listen: str, *extra: str) -> list[str]:
    """The command line of `rke2ha dns serve -f SPEC --listen LISTEN [extra]`."""
    return [
        sys.executable,
        "-m",
        "rke2ha",
        "dns",
        "serve",
        "-f",
        str(spec),
        "--listen",
        listen,
        *extra,
    ]


def start_server(
    spec: Path,
    *extra: str,
    zone: str = "example.com",
    host: str = SERVER_HOST,
    port: int | None = None,
) -> Running:
    """Start `rke2ha dns serve -f SPEC --listen HOST:PORT` as a real subprocess."""
    port = port or free_port(host)
    proc = subprocess.Popen(
        serve_argv(spec, f"{host}:{port}", *extra),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, host, port)
    try:
        wait_until_answers(host, port, zone)
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """`start_server`, with every server started stopped at teardown."""
    started: list[Running] = []

    def start(
        spec: Path,
        *extra: str,
        zone: str = "example.com",
        host: str = SERVER_HOST,
        port: int | None = None,
    ) -> Running:
        running = start_server(spec, *extra, zone=zone, host=host, port=port)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def dig(host: str, port: int, name: str, rdtype: str = "A", *options: str) -> dict[str, Any]:
    """Run Debian's `dig` with +yaml and return its response_message_data."""
    out = subprocess.run(
        [
            "dig",
            f"@{host}",
            "-p",
            str(port),
            name,
            rdtype,
            "+yaml",
            "+norec",
            "+time=2",
            "+tries=1",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    # dig adds comment lines ("; Transfer failed.") that are not YAML.
    text = "\n".join(line for line in out.stdout.splitlines() if not line.startswith(";"))
    docs = yaml.safe_load(text)
    assert docs, f"dig printed nothing: {out.stdout}{out.stderr}"
    messages = [d for d in docs if d.get("type") == "MESSAGE"]
    assert messages, f"dig got no answer: {out.stdout}"
    data: dict[str, Any] = messages[-1]["message"]["response_message_data"]
    data["_protocol"] = messages[-1]["message"].get("socket_protocol")
    return data


def flags(data: dict[str, Any]) -> set[str]:
    return set(str(data.get("flags", "")).split())


def section(data: dict[str, Any], name: str) -> list[str]:
    return [str(line) for line in data.get(f"{name}_SECTION") or []]


# ---- BIND --------------------------------------------------------------------------------


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Named]:
    """A real BIND primary for example.com with TSIG key rke2ha-key., on a loopback port."""
    with running_named(tmp_path, "example.com", TSIG_SECRET) as server:
        yield server
