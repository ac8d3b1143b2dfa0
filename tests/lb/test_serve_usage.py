"""`rke2ha lb serve` refuses flags it would otherwise misuse: one clear line, exit 2.

Each case exits before binding or connecting anything (the addresses are never used).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rke2ha.errors import UsageError
from rke2ha.lb.config import check_not_itself, parse_hostport

REPO = Path(__file__).resolve().parents[2]
LISTEN = "127.0.30.10:31990"
L7_FILES = ("--cert", "/nonexistent.crt", "--key", "/nonexistent.key", "--hostname", "r.test")


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rke2ha", "lb", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--listen", LISTEN, "--backend", LISTEN), "would connect to itself"),
        (("--listen", "0.0.0.0:31990", "--backend", "127.0.0.1:31990"), "connect to itself"),
        (("--listen", LISTEN, "--backend", "127.0.96,3:8081"), "one address per flag"),
        (("--listen", LISTEN, "--backend", "http://127.0.30.11:80"), "without the scheme"),
        (("--listen", LISTEN, "--backend", "127.0.96:8081"), "not a valid IPv4 address"),
        (("--listen", LISTEN, "--backend", "no_such host:80"), "not an IP address or a host"),
        (("--listen", "localhost:31990", "--backend", "127.0.0.1:31990"), "connect to itself"),
        (("--listen", LISTEN, "--backend", "127.0.30.11:80", *L7_FILES), "add --layer 7"),
        (
            ("--listen", LISTEN, "--backend", "127.0.30.11:80", "--affinity", "cookie"),
            "--affinity is a layer 7 flag",
        ),
        (
            ("--listen", LISTEN, "--backend", "127.0.30.11:80", "--http-timeout", "5s"),
            "--http-timeout is a layer 7 flag",
        ),
        (("--layer", "7", "--backend", "127.0.30.11:80", *L7_FILES), "--layer 7 needs --listen"),
        (
            ("--layer", "7", "--listen", "[::]:31990", "--backend", "127.0.30.11:80", *L7_FILES,
             "--redirect-from", "[::1]:31990"),
            "uses the port of --listen",
        ),
        (
            ("--layer", "7", "--listen", LISTEN, "--backend", "127.0.30.11:80", *L7_FILES,
             "--redirect-from", LISTEN),
            "uses the port of --listen",
        ),
        (
            ("--layer", "7", "--listen", LISTEN, "--backend", "127.0.30.11:80", *L7_FILES,
             "--send-proxy"),
            "--send-proxy is for layer 4",
        ),
        (("-f", "examples/existing-l4.yaml", "--cert", "/x.crt"), "with -f the spec sets"),
        (("-f", "examples/existing-l4.yaml", "--port-offset", "60000"), "past 65535"),
        (("--listen", LISTEN, "--backend", "127.0.30.11:80", "--workers", "10000"), "per CPU"),
        (
            ("--layer", "7", "--listen", LISTEN, "--backend", "127.0.30.11:80",
             "--cert", "/x.crt", "--key", "/x.key", "--hostname", "https://r.test/"),
            "'https://r.test/' is a URL; give the host name alone (--hostname r.test)",
        ),
        (
            ("--listen", "127.0.30.10:0", "--backend", "127.0.30.11:80"),
            "port 0 (any free port) is not offered here, since clients must know the port",
        ),
        (
            ("--listen", LISTEN, "--backend", "127.0.30.11:80", "--backend", "127.0.30.11:80"),
            "--backend 127.0.30.11:80 given more than once",
        ),
    ],
)  # fmt: skip
def test_refused_with_one_clear_line(args: tuple[str, ...], says: str) -> None:
    proc = _serve(*args)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_spec_with_a_node_on_the_load_balancer_address_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "rke2ha.yaml"
    spec.write_text(
        "name: selfloop\nhostname: rancher.example.test\nprovider: existing\nnodes:\n"
        "  - {name: n1, address: 127.0.30.11}\n  - {name: n2, address: 127.0.30.12}\n"
        "  - {name: n3, address: 127.0.30.10}\n"
        "load_balancer: {address: 127.0.30.10, ports: [443]}\ndns: {zone: example.test}\n"
    )
    proc = _serve("-f", str(spec), "--port-offset", "20000")
    assert proc.returncode == 2, proc.stderr
    assert "node n3 has the load balancer's address 127.0.30.10" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_host_forms_that_stay_valid() -> None:
    assert parse_hostport("[::1]:443", "--backend") == ("::1", 443)
    assert parse_hostport("node-1.example.com:80", "--backend") == ("node-1.example.com", 80)
    assert parse_hostport("localhost:80", "--backend") == ("localhost", 80)
    check_not_itself(("127.0.30.10", 443), ("127.0.30.10", 80), "--backend")  # other port
    check_not_itself(("127.0.30.10", 443), ("127.0.30.11", 443), "--backend")  # other host
    with pytest.raises(UsageError, match="itself"):
        check_not_itself(("::", 443), ("::1", 443), "--backend")
    with pytest.raises(UsageError, match="itself"):  # the same address, written otherwise
        check_not_itself(("::1", 443), ("0:0:0:0:0:0:0:1", 443), "--backend")


def test_world_readable_key_and_foreign_admin_address_exit_1(tmp_path: Path) -> None:
    from tests.support.certs import write_self_signed

    cert, key = write_self_signed(tmp_path / "r.crt", tmp_path / "r.key", "r.test")
    key.chmod(0o644)
    layer7 = ("--layer", "7", "--cert", str(cert), "--key", str(key), "--hostname", "r.test")
    proc = _serve("--listen", LISTEN, "--backend", "127.0.30.11:80", *layer7)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"--key {key}: the private key is readable by others (mode 644)" in proc.stderr
    # 203.0.113.1 (TEST-NET-3) is not on this machine: the bind fails, nothing is sent.
    proc = _serve(
        "--listen", LISTEN, "--backend", "127.0.30.11:80", "--admin", "203.0.113.1:18404",
        "--access-log", "off",
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "(the address is not assigned to this machine)" in proc.stderr
    assert "another program may hold it" not in proc.stderr
