"""The lab's plain parts without a running lab: ports and URLs, /status parsing, identity."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.lab_up.helpers import lab_spec, write_spec

from rke2ha.providers.lab.processes import Liveness, cmdline, inspect, start_time
from rke2ha.providers.lab.readiness import lb_backends
from rke2ha.providers.lab.topology import build_topology, command_line
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec


def _spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "rke2ha.yaml", lab_spec())


def test_offset_moves_every_port_and_every_printed_url(tmp_path: Path) -> None:
    topology = build_topology(load_spec(_spec(tmp_path)), 30000)
    assert topology.rancher_url == "https://rancher.lab.rke2ha.test:30443/"
    assert topology.lb_ports == {80: 30080, 443: 30443, 6443: 36443, 9345: 39345}
    assert (topology.dns_host, topology.dns_port) == ("127.0.70.53", 30053)
    assert [n.host for n in topology.nodes] == ["127.0.70.11", "127.0.70.12", "127.0.70.13"]
    assert topology.nodes[0].tcp_ports == (30080, 30443, 36443, 39345)
    commands = "\n".join(topology.commands())
    assert "--resolve rancher.lab.rke2ha.test:30443:127.0.70.10" in commands
    assert "dig @127.0.70.53 -p 30053 rancher.lab.rke2ha.test" in commands
    # The admin endpoint too: the lab's own address, 8404 + the offset (issue 15).
    assert topology.admin == ("127.0.70.10", 38404)
    assert 38404 in topology.lb.tcp_ports
    assert "curl http://127.0.70.10:38404/status" in commands


def test_the_admin_default_is_the_labs_own_and_an_explicit_one_is_moved_too(
    tmp_path: Path,
) -> None:
    spec = load_spec(_spec(tmp_path))
    assert spec.load_balancer.admin == "127.0.70.10:8404"
    # A copy of the filled spec (model_dump sets every field) keeps the lab's address.
    copy = Spec.model_validate(spec.model_dump())
    assert copy.load_balancer.admin_listen(500) == ("127.0.70.10", 8904)
    document = lab_spec()
    document["load_balancer"]["admin"] = "127.0.70.20:9000"
    explicit = load_spec(write_spec(tmp_path / "explicit.yaml", document))
    assert build_topology(explicit, 1000).admin == ("127.0.70.20", 10000)
    # Other providers keep the documented 127.0.0.1:8404 (a machine of their own).
    existing = dict(lab_spec(), provider="existing")
    existing["nodes"] = [{"name": f"n{i}", "address": f"10.0.0.{i}"} for i in (1, 2, 3)]
    existing["load_balancer"] = dict(existing["load_balancer"], address="10.0.0.10")
    del existing["lab"]
    other = load_spec(write_spec(tmp_path / "existing.yaml", existing))
    assert other.load_balancer.admin_listen() == ("127.0.0.1", 8404)


def test_real_ports_print_plain_urls(tmp_path: Path) -> None:
    topology = build_topology(load_spec(_spec(tmp_path)), 0)
    assert topology.rancher_url == "https://rancher.lab.rke2ha.test/"
    assert topology.lb_ports[443] == 443 and topology.dns_port == 53


def test_command_lines_name_the_spec_and_the_offset(tmp_path: Path) -> None:
    spec_file = _spec(tmp_path)
    topology = build_topology(load_spec(spec_file), 30000)
    node = command_line(topology, topology.nodes[1], spec_file, joining=True)
    assert node[1:4] == ("-m", "rke2ha.commands.lab", "node")
    assert "--port-offset" in node and "30000" in node and node[-2:] == ("--state", "joining")
    assert str(spec_file.resolve()) in node
    dns = command_line(topology, topology.dns, spec_file)
    assert dns[-4:] == ("--listen", "127.0.70.53:30053", "--health-port", "30080")


def test_lb_status_is_read_for_this_lab_only(tmp_path: Path) -> None:
    topology = build_topology(load_spec(_spec(tmp_path)), 30000)
    document = {
        "frontends": [
            {
                "address": "127.0.70.10:30443",
                "backends": [
                    {"name": "node-1", "serves": True, "last_check": 1.0},
                    {"name": "node-2", "serves": False, "last_check": 1.0},
                    {"name": "node-3", "serves": True, "last_check": None},  # never checked
                ],
            },
            {"address": "127.0.60.10:10443", "backends": [{"name": "node-1", "serves": False}]},
        ]
    }
    assert lb_backends(topology, document) == {
        "node-1": {443: True},
        "node-2": {443: False},
        "node-3": {443: False},
    }


def test_a_pid_is_ours_only_with_our_command_line_and_start_time() -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    proc = subprocess.Popen(argv)
    try:
        # Between fork and exec /proc/<pid>/cmdline is empty: wait (bounded) for the exec.
        deadline = time.monotonic() + 5
        while not cmdline(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        recorded = cmdline(proc.pid)
        assert recorded == tuple(argv)
        started = start_time(proc.pid)
        assert inspect(proc.pid, argv, started).liveness is Liveness.RUNNING
        other = [sys.executable, "-m", "rke2ha", "lab", "node"]
        assert inspect(proc.pid, other, started).liveness is Liveness.FOREIGN
        assert inspect(proc.pid, argv, (started or 0) + 1).liveness is Liveness.FOREIGN
    finally:
        proc.kill()
        proc.wait(5)
    assert inspect(proc.pid, argv, started).liveness is Liveness.GONE
