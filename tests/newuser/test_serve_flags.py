"""`rke2ha lb serve` and `rke2ha dns serve` given the flags operators get wrong: exit 2 and
one line naming the flag, before anything listens (loopback only)."""

from __future__ import annotations

import socket

import pytest
from tests.conftest import free_port
from tests.newuser.conftest import Runner

ADHOC = ["lb", "serve", "--admin", "off"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--listen", "127.0.0.1", "--backend", "127.0.0.1:9"],
            "--listen '127.0.0.1': expected HOST:PORT",
        ),
        (
            ["--listen", "127.0.0.1:99999", "--backend", "127.0.0.1:9"],
            "--listen '127.0.0.1:99999': the port must be 1-65535",
        ),
        (
            [
                "--listen",
                "127.0.0.1:18555",
                "--listen",
                "127.0.0.1:18556",
                "--backend",
                "127.0.0.1:9",
            ],
            "--listen given twice",
        ),
        (
            ["--listen", "127.0.0.1:18555", "--backend", "garbage"],
            "--backend 'garbage': expected HOST:PORT",
        ),
        (
            ["--listen", "127.0.0.1:18555", "--backend", "127.0.0.1:0"],
            "--backend '127.0.0.1:0': the port must be 1-65535",
        ),
        (["--listen", "127.0.0.1:18555"], "give at least one --backend HOST:PORT"),
        (["--backend", "127.0.0.1:9"], "--backend needs --listen HOST:PORT"),
        (
            ["--listen", "127.0.0.1:18555", "--backend", "127.0.0.1:9", "--health", "http:"],
            "--health 'http:': expected tcp, http:PATH[@PORT]",
        ),
        (
            ["--listen", "127.0.0.1:18555", "--backend", "127.0.0.1:9", "--workers", "0"],
            "argument --workers: '0' is not a whole number >= 1",
        ),
        (
            ["--listen", "127.0.0.1:18555", "--backend", "127.0.0.1:9", "--interval", "0"],
            "argument --interval: '0' must be longer than 0",
        ),
        (
            ["--listen", "127.0.0.1:18555", "--backend", "127.0.0.1:9", "--timeout", "5x"],
            "argument --timeout: '5x' is not a duration",
        ),
        (
            [
                "--listen",
                "127.0.0.1:18555",
                "--backend",
                "127.0.0.1:9",
                "--access-log",
                "/nonexistent/x",
            ],
            "--access-log '/nonexistent/x': cannot open it for appending: No such file",
        ),
    ],
)
def test_lb_serve_bad_flags(rke2ha: Runner, flags: list[str], message: str) -> None:
    result = rke2ha(*ADHOC, *flags, timeout=20)
    assert result.code == 2, result.text
    assert result.err.splitlines()[-1].startswith("rke2ha lb serve: error: ")
    assert message in result.err


def test_lb_serve_admin_without_port(rke2ha: Runner) -> None:
    result = rke2ha(
        "lb", "serve", "--listen", "127.0.0.1:18555", "--backend", "127.0.0.1:9", "--admin", "x"
    )
    assert result.code == 2
    assert "--admin 'x': expected HOST:PORT" in result.err


def test_lb_serve_without_spec_or_flags(rke2ha: Runner) -> None:
    result = rke2ha("lb", "serve")
    assert result.code == 2
    assert "rke2ha lb serve: error: no ./rke2ha.yaml here" in result.err


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:99999", "'127.0.0.1:99999': port must be a number from 0 to 65535"),
        (":53", "':53' has no host"),
        ("", "--listen is empty"),
    ],
)
def test_dns_serve_bad_listen(rke2ha: Runner, listen: str, message: str) -> None:
    result = rke2ha("dns", "serve", "-f", "lab.yaml", "--listen", listen, timeout=20)
    assert result.code == 2, result.text
    assert result.err.startswith("rke2ha dns serve: error: ")
    assert message in result.err


def test_dns_serve_port_in_use(rke2ha: Runner) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = rke2ha("dns", "serve", "-f", "lab.yaml", "--listen", f"127.0.0.1:{port}")
    assert result.code == 2
    assert f"cannot listen on 127.0.0.1:{port}: " in result.err
    assert ": None;" not in result.err  # the reason, not a missing strerror
    assert "pick another address or port with --listen" in result.err


def test_dns_serve_health_port_zero(rke2ha: Runner) -> None:
    result = rke2ha("dns", "serve", "-f", "lab.yaml", "--health-port", "0")
    assert result.code == 2
    assert "argument --health-port: '0': expected a port 1-65535" in result.err


def test_dns_check_accepts_dns_server_like_check(rke2ha: Runner) -> None:
    # Nothing listens there (UDP to a closed loopback port): a bounded, clear failure.
    port = free_port(kind=socket.SOCK_DGRAM)
    result = rke2ha("dns", "check", "-f", "lab.yaml", "--dns-server", f"127.0.0.1:{port}")
    assert result.code == 1
    assert f"TIMEOUT (via 127.0.0.1:{port})" in result.out
    assert "is the DNS server running?" in result.out
    assert "not published there" not in result.out
