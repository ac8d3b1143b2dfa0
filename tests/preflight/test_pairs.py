"""The pair probes and name resolution judged without SSH: what to open where, the probe
program's JSON lines, the findings; `getent` answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import replace

from tests.conftest import free_port
from tests.preflight.test_facts import REAL

from rke2ha.preflight import pairs, resolve
from rke2ha.preflight.facts import from_output
from rke2ha.preflight.pairs import Peer, ProbeResult
from rke2ha.preflight.parsers import Listener

PEERS = {
    "node-1": Peer("node-1", 0, "198.18.0.11"),
    "node-2": Peer("node-2", 1, "198.18.0.12"),
    "node-3": Peer("node-3", 2, "198.18.0.13"),
}


def test_listener_takes_only_the_free_ports() -> None:
    facts = from_output(REAL)
    assert pairs.to_open(facts) == ["tcp:9345", "tcp:6443", "tcp:2379", "tcp:2380",
                                    "tcp:10250", "udp:8472"]  # fmt: skip
    held = [Listener("tcp", "*", 6443, ""), Listener("udp", "0.0.0.0", 8472, "flanneld (pid 3)")]
    busy = replace(facts, listeners=held)
    assert "tcp:6443" not in pairs.to_open(busy) and "udp:8472" not in pairs.to_open(busy)
    assert pairs.udp_taken(busy) == [8472]
    assert pairs.parse_ready("ready tcp:9345 udp:8472\n") == ["tcp:9345", "udp:8472"]
    assert pairs.parse_ready("") == []


def test_the_programs_are_valid_python_and_the_probe_runs_here() -> None:
    compile(pairs.LISTENER, "listener", "exec")
    # The probe against a closed loopback port (127.0.118.1, unused by other tests).
    done = subprocess.run(
        [sys.executable, "-c", pairs.PROBE, "1", "127.0.118.1:tcp:1"],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == {
        "to": "127.0.118.1", "proto": "tcp", "port": 1, "result": "refused",
    }  # fmt: skip


def test_listener_and_probe_programs_over_real_sockets() -> None:
    """The two programs as the nodes run them, here on free ports of this machine: the
    probe finds the listener's TCP port open and its UDP echo answering; the listener ends
    as soon as its stdin closes."""
    tcp_port, udp_port = free_port("0.0.0.0"), free_port("0.0.0.0", socket.SOCK_DGRAM)
    listener = subprocess.Popen(
        [sys.executable, "-c", pairs.LISTENER, pairs.LISTENER_MARK, "30",
         f"tcp:{tcp_port}", f"udp:{udp_port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdin is not None
        ready = pairs.parse_ready(listener.stdout.readline())
        assert ready == [f"tcp:{tcp_port}", f"udp:{udp_port}"]
        closed = free_port("127.0.118.1")
        done = subprocess.run(
            [sys.executable, "-c", pairs.PROBE, "1.5", f"127.0.118.1:tcp:{tcp_port}",
             f"127.0.118.1:udp:{udp_port}", f"127.0.118.1:tcp:{closed}",
             f"127.0.118.1:udp:{closed}"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        results = [json.loads(line)["result"] for line in done.stdout.splitlines()]
        assert results == ["open", "open", "refused", "dropped"]
        started = time.monotonic()
        listener.stdin.close()
        assert listener.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.5
    finally:
        listener.kill()
        listener.wait()


def test_blocked_pairs_become_one_finding_each_on_the_source() -> None:
    output = (
        "\n".join(
            json.dumps({"to": to, "proto": proto, "port": port, "result": result})
            for to, proto, port, result in [
                ("198.18.0.12", "tcp", 2380, "open"),
                ("198.18.0.13", "tcp", 2380, "dropped"),
                ("198.18.0.13", "udp", 8472, "refused"),
                ("198.18.0.99", "tcp", 2380, "dropped"),  # not a node: ignored
            ]
        )
        + "\nTraceback junk\n"
    )
    by_address = {p.address: p.node for p in PEERS.values()}
    results = pairs.parse_probe("node-1", output, by_address)
    assert len(results) == 3
    skipped = ProbeResult("node-2", "node-3", "udp", 8472, "not probed: port in use")
    findings = pairs.judge([*results, skipped], PEERS)
    assert [(f.id, f.node, f.path, f.value) for f in findings] == [
        ("node.reach", "node-1", "nodes[0]", "to node-3: TCP 2380 dropped"),
        ("node.reach", "node-1", "nodes[0]", "to node-3: UDP 8472 refused"),
    ]
    assert findings[0].message.startswith("from node-1 to node-3: TCP 2380 dropped;")
    assert "from 198.18.0.11 to 198.18.0.13" in findings[0].fix


def test_resolution_judged_per_node() -> None:
    host, lb = "rancher.example.com", ["10.0.0.10"]
    assert resolve.names_to_resolve(host, ["10.0.0.10", "lb.example.com"]) == [
        host, "lb.example.com",
    ]  # fmt: skip
    answers = resolve.parse(f"{host} 10.0.0.10\nlb.example.com\n")
    assert answers == {host: ["10.0.0.10"], "lb.example.com": []}
    value, found = resolve.judge("node-1", 0, host, lb, answers, False)
    assert (value, found) == (f"{host} -> 10.0.0.10", [])
    value, found = resolve.judge("node-1", 0, host, lb, {host: ["10.9.9.9"]}, False)
    assert [(f.severity, f.value) for f in found] == [("error", f"{host} -> 10.9.9.9")]
    value, found = resolve.judge("node-2", 1, host, lb, {}, True)
    assert [(f.severity, f.node) for f in found] == [("warning", "node-2")]
    assert "rke2ha dns publish" in found[0].fix
    value, found = resolve.judge("node-2", 1, host, ["lb.example.com"],
                                 {host: ["10.0.0.10"]}, False)  # fmt: skip
    assert [(f.severity, f.value) for f in found] == [("error", "lb.example.com: no answer")]


def test_lookup_command_output_shape_with_getent_here() -> None:
    done = subprocess.run(["sh", "-c", resolve.command(["localhost", "no-such.invalid"])],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    answers = resolve.parse(done.stdout)
    assert "127.0.0.1" in answers["localhost"]
    assert answers["no-such.invalid"] == []
