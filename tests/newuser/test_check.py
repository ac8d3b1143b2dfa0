"""`rke2ha check` against a lab spec with nothing running: it says the lab is not up; aimed
at the lab's ports (--port-offset) every check fails, at once and with its reason, in text
and in JSON. Loopback only: the lab subnet is moved to an unused 127.0.251.0/24 and DNS
goes to a closed loopback port, never the system resolver."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.conftest import free_port
from tests.newuser.conftest import Runner


def _idle_lab(scratch: Path) -> str:
    text = (scratch / "lab.yaml").read_text()
    assert "subnet: 127.0.10.0/24" in text
    (scratch / "idle.yaml").write_text(text.replace("127.0.10.0/24", "127.0.251.0/24"))
    return "idle.yaml"


def test_check_of_a_lab_that_is_not_up_says_so(rke2ha: Runner, scratch: Path) -> None:
    result = rke2ha("check", "-f", _idle_lab(scratch), "--json")
    assert result.code == 1 and result.out == ""
    assert "the lab 'lab' is not up" in result.err and "rke2ha up -f idle.yaml" in result.err


def test_check_with_nothing_running_fails_fast(rke2ha: Runner, scratch: Path) -> None:
    dns = f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}"
    started = time.monotonic()
    result = rke2ha(
        "check", "-f", _idle_lab(scratch), "--port-offset", "0",
        "--dns-server", dns, "--timeout", "0.5", "--json",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.code == 1, result.text
    assert elapsed < 15, f"took {elapsed:.1f}s"
    checks = {c["id"]: c for c in json.loads(result.out)["checks"]}
    assert all(c["status"] == "fail" for c in checks.values())
    # The DNS probe honours --timeout and says what to do, instead of the generic guard.
    assert checks["dns.record"]["detail"].startswith(f"no answer from {dns}")
    assert "--dns-server" in checks["dns.record"]["fix"]
    assert checks["lb.port.443"]["detail"] == "connection to 127.0.251.10:443 refused"
    # a lab's load balancer starts with the lab: the fix names that command and this spec
    fix = checks["lb.port.443"]["fix"]
    assert "start the load balancer with the lab" in fix and " up -f " in fix, fix
    assert "idle.yaml" in fix and "FILE" not in fix, fix


def test_check_text_summary(rke2ha: Runner, scratch: Path) -> None:
    dns = f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}"
    result = rke2ha(
        "check", "-f", _idle_lab(scratch), "--port-offset", "0",
        "--dns-server", dns, "--timeout", "0.5",
    )  # fmt: skip
    assert result.code == 1
    assert "FAILED: 0 passed" in result.out


def test_check_bad_flags(rke2ha: Runner, scratch: Path) -> None:
    result = rke2ha("check", "-f", _idle_lab(scratch), "--dns-server", "127.0.0.1:99999")
    assert result.code == 2
    assert "--dns-server" in result.err and "99999" in result.err


def test_check_timeout_zero_says_the_range(rke2ha: Runner, scratch: Path) -> None:
    result = rke2ha("check", "-f", _idle_lab(scratch), "--timeout", "0")
    assert result.code == 2
    assert "argument --timeout: 0: give more than 0 and at most 60 seconds" in result.err


def test_unknown_drill_node_fails_before_the_checks(rke2ha: Runner, scratch: Path) -> None:
    started = time.monotonic()
    result = rke2ha("check", "-f", _idle_lab(scratch), "--drill", "--drill-node", "node-9")
    assert result.code == 2
    assert "--drill-node 'node-9' is not in the spec (nodes: node-1, node-2, node-3)" in result.err
    assert result.out == ""  # no check ran
    assert time.monotonic() - started < 10


def test_up_without_yes_and_no_terminal(rke2ha: Runner, scratch: Path) -> None:
    # provider existing asks before changing anything (the lab does not: it only starts
    # loopback processes, and without --detach it would run in the foreground). Loopback
    # addresses and manual DNS, so planning contacts nothing.
    (scratch / "onprem.yaml").write_text(
        """name: onprem
hostname: rancher.onprem.rke2ha.test
provider: existing
region: dc1
nodes:
  - {name: node-1, address: 127.0.251.11, zone: a}
  - {name: node-2, address: 127.0.251.12, zone: b}
  - {name: node-3, address: 127.0.251.13, zone: c}
load_balancer: {engine: haproxy, address: 127.0.251.10}
dns: {provider: manual, zone: onprem.rke2ha.test}
"""
    )
    result = rke2ha("up", "-f", "onprem.yaml")
    assert result.code == 2
    assert "needs confirmation: rerun with --yes (no terminal to ask on)" in result.err
