"""Output for pipes and scripts: what `rke2ha` prints when stdout is no terminal.

Every command runs as a real subprocess with stdout a pipe and no COLUMNS in its
environment, as in a script or `| tee log`. Addresses: 127.0.151.0/24 (this area's own).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.output.helpers import run

SUBNET = "127.0.151.0/24"
LB = "127.0.151.10"
# Long enough that the ownership TXT record is well over 80 columns.
HOSTNAME = "rancher.pipes-and-scripts.output.rke2ha.test"
ZONE = "output.rke2ha.test"


def lab_spec(name: str = "pipes") -> dict[str, Any]:
    return {
        "name": name,
        "hostname": HOSTNAME,
        "provider": "lab",
        "ingress": "nginx",
        "nodes": [{"name": f"node-{i}"} for i in (1, 2, 3)],
        "load_balancer": {"health": {"interval": "500ms", "timeout": "500ms", "rise": 1}},
        "dns": {"provider": "builtin", "zone": ZONE, "ttl": 5},
        "lab": {"subnet": SUBNET, "port_offset": 15100},
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def lab_file(tmp_path: Path) -> Iterator[Path]:
    spec_file = write(tmp_path / "lab.yaml", lab_spec())
    yield spec_file
    run("down", "-f", str(spec_file), cwd=tmp_path)


def test_a_reader_that_goes_away_ends_the_command_quietly(lab_file: Path) -> None:
    # `rke2ha down --json | head -c0`: the reader is gone before anything is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run("down", "-f", str(lab_file), "--json", cwd=lab_file.parent, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.code == 141, result.err
    assert "Broken pipe" not in result.err and "Traceback" not in result.err
    assert "Exception ignored" not in result.err


def test_a_stopped_lab_says_so_instead_of_hints_and_failing_probes(lab_file: Path) -> None:
    status = run("lab", "status", "-f", str(lab_file), cwd=lab_file.parent)
    assert status.code == 1
    assert "lab pipes is not up" in status.out
    assert "curl" not in status.out and "Rancher URL" not in status.out

    started = time.monotonic()
    check = run("check", "-f", str(lab_file), cwd=lab_file.parent)
    assert check.code == 1
    assert "the lab 'pipes' is not up" in check.err and f"rke2ha up -f {lab_file}" in check.err
    assert check.out == ""  # no table of 23 refused probes
    assert time.monotonic() - started < 10

    # An explicit offset aims at a lab started some other way: the probes run.
    probed = run(
        "check", "-f", str(lab_file), "--port-offset", "15100", "--timeout", "0.5",
        "--dns-server", "127.0.151.53:15153", "--json", cwd=lab_file.parent,
    )  # fmt: skip
    assert probed.code == 1
    assert json.loads(probed.out)["summary"]["fail"] > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="binds 127.0.151.x (needs root for the lab)")
def test_hints_of_a_running_lab_whose_nodes_are_down(lab_file: Path) -> None:
    up = run("up", "-f", str(lab_file), "--detach", cwd=lab_file.parent, timeout=90)
    assert up.code == 0, up.out + up.err
    status = run("lab", "status", "-f", str(lab_file), cwd=lab_file.parent)
    assert status.code == 0 and "curl" in status.out

    for node in ("node-1", "node-2", "node-3"):
        assert run("lab", "kill", "-f", str(lab_file), node, cwd=lab_file.parent).code == 0
    check = run("check", "-f", str(lab_file), "--json", "--timeout", "1", cwd=lab_file.parent)
    assert check.code == 1
    results = {c["id"]: c for c in json.loads(check.out)["checks"]}
    # The load balancer runs: accepted and reset. Its fix is the nodes, not starting it.
    for check_id in ("lb.port.443", "rancher.ping", "registration"):
        fix = results[check_id]["fix"]
        assert "start the load balancer" not in fix, (check_id, fix)
        assert "no node answered" in fix and "/status" in fix, (check_id, fix)

    down = run("down", "-f", str(lab_file), cwd=lab_file.parent)
    assert down.code == 0, down.err
    status = run("lab", "status", "-f", str(lab_file), cwd=lab_file.parent)
    assert status.code == 1 and "is not up" in status.out and "curl" not in status.out


def existing_spec() -> dict[str, Any]:
    return {
        "name": "pipes",
        "hostname": HOSTNAME,
        "provider": "existing",
        "ingress": "nginx",
        "nodes": [{"name": f"node-{i}", "address": f"127.0.151.{20 + i}"} for i in (1, 2, 3)],
        "load_balancer": {"engine": "builtin", "address": LB, "admin": f"{LB}:8404"},
        "dns": {"provider": "manual", "zone": ZONE},
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="the load balancer binds 80/443 on 127.0.151.10")
def test_manual_dns_records_reach_a_pipe_whole_and_unprefixed(tmp_path: Path) -> None:
    spec_file = write(tmp_path / "rke2ha.yaml", existing_spec())
    try:
        up = run("up", "-f", str(spec_file), "--yes", cwd=tmp_path, timeout=90)
        assert up.code == 0, up.out + up.err
        lines = up.out.splitlines()
        txt = [line for line in lines if " IN TXT " in line]
        assert len(txt) == 1 and len(txt[0]) > 80, up.out  # one line, however long
        assert txt[0].startswith(f"_rke2ha.{HOSTNAME}. 60 IN TXT "), up.out
        assert txt[0].endswith('"heritage=rke2ha,rke2ha/cluster=pipes"'), up.out
        address = f"{HOSTNAME}. 60 IN A {LB}"
        assert address in lines, up.out  # verbatim: the line a person pastes
        assert not [line for line in lines if line.startswith("next: ;")], up.out
        again = run("plan", "-f", str(spec_file), cwd=tmp_path)
        assert again.code == 0
    finally:
        down = run("down", "-f", str(spec_file), "--yes", "--json", cwd=tmp_path, timeout=60)
    assert down.code == 0, down.err
    document = json.loads(down.out)
    assert document["dns_instructions"][0].startswith("; Delete these records in zone")
    assert f"{HOSTNAME}. 60 IN A {LB}" in document["dns_instructions"]
