"""Each node check on the real machine's facts (passing) and on facts changed the way a
failing machine prints them; hostname and clock-skew checks across nodes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.preflight.test_facts import REAL

from rke2ha.preflight import checks
from rke2ha.preflight.checks import ClockReading, hostname_findings, skew_findings
from rke2ha.preflight.facts import NodeFacts, from_output
from rke2ha.preflight.parsers import Listener, Swap, UnitState

GIB = 1024**3


def outcomes(facts: NodeFacts) -> dict[str, tuple[str, str]]:
    return {o.id: (o.status, o.value) for o in checks.run_node_checks(facts)}


def test_the_real_machine_passes_all_but_the_shared_host_limits() -> None:
    result = outcomes(from_output(REAL))
    assert {k: s for k, (s, _) in result.items() if s != "pass"} == {
        "node.cpu": "warning",  # 2 CPUs: the host's (machines share its kernel)
        "node.time_sync": "warning",  # the host kernel's clock is not NTP-synchronised here
    }
    assert result["node.ports_free"] == ("pass", "free")
    assert result["node.default_route"] == ("pass", "default via 198.18.0.1 dev eth0")
    assert set(result) == {c.id for c in checks.NODE_CHECKS}


BASE = from_output(REAL)


@pytest.mark.parametrize(
    ("change", "check", "status", "value"),
    [
        ({"pid1": "init"}, "node.systemd", "error", "init"),
        ({"arch": "aarch64"}, "node.arch", "warning", "aarch64"),
        ({"arch": "s390x"}, "node.arch", "error", "s390x"),
        ({"cpus": 1}, "node.cpu", "error", "1 CPU"),
        ({"cpus": 8}, "node.cpu", "pass", "8 CPU"),
        ({"memory_bytes": 2 * GIB}, "node.memory", "error", "2.0 GiB"),
        ({"memory_bytes": int(7.7 * GIB)}, "node.memory", "warning", "7.7 GiB"),
        ({"listeners": [Listener("tcp", "*", 6443, "python3 (pid 9)")]},
         "node.ports_free", "error", "TCP 6443 held by python3 (pid 9)"),
        ({"listeners": [Listener("udp", "0.0.0.0", 8472, "")]},
         "node.ports_free", "error", "UDP 8472"),
        ({"listeners": [Listener("udp", "0.0.0.0", 6443, "")]}, "node.ports_free", "pass", "free"),
        ({"listeners": [Listener("tcp", "*", 6443, "kube-apiserver (pid 9)")],
          "units": {"rke2-server": UnitState("active", "enabled")}},
         "node.ports_free", "pass", "held by RKE2 (rke2-server is running)"),
        ({"units": {"firewalld": UnitState("inactive", "enabled")}},
         "node.firewalld", "error", "firewalld enabled"),
        ({"units": {"NetworkManager": UnitState("active", "enabled")}},
         "node.networkmanager", "error", "unmanaged-devices=(none)"),
        ({"units": {"NetworkManager": UnitState("active", "enabled")},
          "nm_unmanaged": ["interface-name:cali*", "interface-name:flannel*"]},
         "node.networkmanager", "pass",
         "unmanaged-devices=interface-name:cali*;interface-name:flannel*"),
        ({"units": {"nm-cloud-setup.timer": UnitState("active", "enabled")}},
         "node.nm_cloud_setup", "error", "nm-cloud-setup.timer active"),
        ({"selinux": "enforcing"}, "node.selinux", "error", "enforcing"),
        ({"selinux": "enforcing", "rke2_selinux": True}, "node.selinux", "pass",
         "enforcing with rke2-selinux"),
        ({"apparmor": True}, "node.apparmor", "error", "enabled, no apparmor_parser"),
        ({"apparmor": True, "apparmor_parser": "/usr/sbin/apparmor_parser"}, "node.apparmor",
         "pass", "enabled, /usr/sbin/apparmor_parser"),
        ({"time_synchronized": True}, "node.time_sync", "pass", "synchronised"),
        ({"swaps": [Swap("/swapfile", "file", 2097148, 0)]}, "node.swap", "warning",
         "/swapfile 2.0 GiB"),
        ({"default_routes": []}, "node.default_route", "error", "none"),
    ],
)  # fmt: skip
def test_each_check(change: dict[str, object], check: str, status: str, value: str) -> None:
    assert outcomes(replace(BASE, **change))[check] == (status, value)  # type: ignore[arg-type]


def test_hostnames_shared_by_two_nodes_are_an_error_on_both() -> None:
    found = hostname_findings([("node-1", 0, "node-1"), ("node-2", 1, "Node-1"),
                               ("node-3", 2, "node-3")])  # fmt: skip
    assert [(f.id, f.node, f.value, f.path, f.severity) for f in found] == [
        ("node.hostname_unique", "node-1", "node-1", "nodes[0]", "error"),
        ("node.hostname_unique", "node-2", "Node-1", "nodes[1]", "error"),
    ]
    assert "node-2" in found[0].message and "hostnamectl" in found[1].fix
    assert hostname_findings([("a", 0, "a"), ("b", 1, "b")]) == []


def test_clock_skew_blames_the_odd_node_beyond_the_round_trip() -> None:
    def read(node: str, index: int, remote: float, rtt: float = 0.01) -> ClockReading:
        return ClockReading(node, index, remote, 100.0, 100.0 + rtt)

    ok = [read("node-1", 0, 100.0), read("node-2", 1, 100.3), read("node-3", 2, 99.8)]
    assert skew_findings(ok) == []
    off = [read("node-1", 0, 100.0), read("node-2", 1, 100.01), read("node-3", 2, 103.5)]
    (finding,) = skew_findings(off)
    assert (finding.id, finding.node, finding.value) == ("node.clock_skew", "node-3", "+3.490s")
    assert "ahead of" in finding.message
    # 1.5s off, but the answer took 2s: no proof of skew.
    slow = [read("node-1", 0, 100.0), read("node-2", 1, 100.01), read("node-3", 2, 102.5, 2.0)]
    assert skew_findings(slow) == []
    assert skew_findings(off[:1]) == []
