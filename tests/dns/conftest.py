"""Fixtures for the DNS tests: spec files, the built-in server as a real subprocess, `dig`,
a real BIND `named` with a TSIG key, and moto's Route 53/ELB server. Everything listens on
127.0.20.0/24 (this area's loopback range) on ephemeral ports and is stopped at teardown."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import yaml
from tests.conftest import REPO, free_port

SERVER_HOST = "127.0.20.1"
# named listens only on addresses its interface scan finds, and lo carries 127.0.0.1/8 as
# one address: so named binds 127.0.0.1 (on an ephemeral port), not an address of our range.
NAMED_HOST = "127.0.0.1"
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


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


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


def wait_until_answers(host: str, port: int, name: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            dns.query.udp(dns.message.make_query(name, "SOA"), host, port=port, timeout=0.3)
            return
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    host: str
    port: int

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.stderr.read() if self.proc.stderr else ""


def start_server(spec: Path, *extra: str, zone: str = "example.com") -> Running:
    """Start `rke2ha dns serve -f SPEC --listen 127.0.20.1:PORT` as a real subprocess."""
    port = free_port(SERVER_HOST)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rke2ha",
            "dns",
            "serve",
            "-f",
            str(spec),
            "--listen",
            f"{SERVER_HOST}:{port}",
            *extra,
        ],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, SERVER_HOST, port)
    try:
        wait_until_answers(SERVER_HOST, port, zone)
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """`start_server`, with every server started stopped at teardown."""
    started: list[Running] = []

    def start(spec: Path, *extra: str, zone: str = "example.com") -> Running:
        running = start_server(spec, *extra, zone=zone)
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


@dataclass
class Named:
    host: str
    port: int
    directory: Path
    key_file: Path
    proc: subprocess.Popen[bytes]


NAMED_CONF = """\
options {{
    directory "{dir}";
    listen-on port {port} {{ {host}; }};
    listen-on-v6 {{ none; }};
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    recursion no;
    dnssec-validation no;
    allow-transfer {{ none; }};
}};
key "rke2ha-key." {{ algorithm hmac-sha256; secret "{secret}"; }};
controls {{ }};
zone "example.com" {{
    type primary;
    file "{dir}/example.com.zone";
    update-policy {{ grant rke2ha-key. zonesub ANY; }};
}};
"""

ZONE = """\
$TTL 60
@ IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60
@ IN NS ns1.example.com.
ns1 IN A {host}
"""


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Named]:
    """A real BIND primary for example.com with TSIG key rke2ha-key., on a loopback port."""
    binary = shutil.which("named") or "/usr/sbin/named"
    if not Path(binary).exists():
        pytest.skip("BIND named is not installed (apt-get install bind9)")
    directory = tmp_path / "named"
    directory.mkdir()
    port = free_port(NAMED_HOST)
    (directory / "named.conf").write_text(
        NAMED_CONF.format(dir=directory, port=port, host=NAMED_HOST, secret=TSIG_SECRET)
    )
    (directory / "example.com.zone").write_text(ZONE.format(host=NAMED_HOST))
    key_file = tmp_path / "tsig.secret"
    key_file.write_text(TSIG_SECRET + "\n")
    key_file.chmod(0o600)
    proc = subprocess.Popen(
        [binary, "-g", "-c", str(directory / "named.conf"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "named.log").open("wb"),
    )
    try:
        wait_until_answers(NAMED_HOST, port, "example.com")
        yield Named(NAMED_HOST, port, directory, key_file, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
