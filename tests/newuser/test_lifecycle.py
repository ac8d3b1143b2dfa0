"""`plan` / `up` / `down` where nothing real can answer: AWS without credentials or with an
endpoint on a closed loopback port, and an RFC 2136 primary (on loopback) that hangs up.
Each fails at once with the reason, never a traceback, never a credential in the output."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import free_port
from tests.newuser.conftest import Runner

FAKE_SECRET = "newuserFakeSecretKey0123456789"


def _aws_env(**extra: str | None) -> dict[str, str | None]:
    # Never off the machine: the endpoint is a closed loopback port, the instance metadata
    # service (a link-local address) is switched off, and no shared config is read.
    env: dict[str, str | None] = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_PROFILE": None,
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("command", [["plan"], ["up", "--yes"], ["down", "--yes"]])
def test_aws_without_credentials(rke2ha: Runner, command: list[str]) -> None:
    result = rke2ha(*command, "-f", "aws.yaml", env=_aws_env(), timeout=60)
    assert result.code == 2, result.text
    assert f"rke2ha {command[0]}: error: no AWS credentials found" in result.err


@pytest.mark.parametrize("command", [["plan", "--json"], ["up", "--yes"]])
def test_aws_endpoint_unreachable(rke2ha: Runner, command: list[str]) -> None:
    env = _aws_env(AWS_ACCESS_KEY_ID="AKIANEWUSERFAKE", AWS_SECRET_ACCESS_KEY=FAKE_SECRET)
    result = rke2ha(*command, "-f", "aws.yaml", env=env, timeout=60)
    assert result.code == 2, result.text
    assert "cannot reach AWS while reading the VPC" in result.err
    assert "check the network or AWS_ENDPOINT_URL" in result.err
    assert FAKE_SECRET not in result.text
    assert result.out == ""  # --json prints no half document on error


@pytest.fixture
def hanging_primary() -> Iterator[int]:
    """A TCP listener on loopback that reads the query and closes without answering, like
    a firewall or a server that does not speak DNS over TCP."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                # Read the query first, so the client sees a clean EOF, not a reset.
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65535)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    server.close()


def _loopback_existing(scratch: Path, port: int) -> str:
    text = (scratch / "existing-l4.yaml").read_text()
    for old, new in (
        ("10.0.1.11", "127.0.0.211"),
        ("10.0.2.11", "127.0.0.212"),
        ("10.0.3.11", "127.0.0.213"),
        ("10.0.0.10", "127.0.0.210"),
        ("server: 10.0.0.53, port: 53", f"server: 127.0.0.1, port: {port}"),
    ):
        assert old in text
        text = text.replace(old, new)
    (scratch / "loop.yaml").write_text(text)
    return "loop.yaml"


@pytest.mark.parametrize("command", [["plan"], ["down", "--yes"]])
def test_rfc2136_primary_that_hangs_up(
    rke2ha: Runner, scratch: Path, hanging_primary: int, command: list[str]
) -> None:
    spec = _loopback_existing(scratch, hanging_primary)
    result = rke2ha(*command, "-f", spec, timeout=60)
    assert result.code == 1, result.text
    assert "the server closed the connection without answering" in result.err
    assert f"answers DNS over TCP on port {hanging_primary}" in result.err
