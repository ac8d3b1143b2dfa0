"""Between the machines: a firewall rule set up for real (nftables inside one machine) is
found as exactly the blocked pair and port; name resolution as each node sees it; and no
probe listener outlives the run."""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.preflight_live.conftest import Run, preflight, write_spec
from tests.support.machines import Machine, Testbed

from rke2ha.preflight import pairs
from rke2ha.preflight.pairs import LISTENER_MARK, PORTS

pytestmark = pytest.mark.root

NODES = ("node-1", "node-2", "node-3")
TABLE = "rke2ha_preflight_test"


def nodes(bed: Testbed) -> list[Machine]:
    return [bed.machine(n) for n in NODES]


@contextlib.contextmanager
def nft_drop(machine: Machine, rule: str) -> Iterator[None]:
    """An nftables input rule `rule ... drop` in `machine` for the block, then removed."""
    machine.sh(
        f"nft add table inet {TABLE} && "
        f"nft add chain inet {TABLE} input '{{ type filter hook input priority 0; }}' && "
        f"nft add rule inet {TABLE} input {rule} drop",
        check=True,
    )
    try:
        yield
    finally:
        machine.sh(f"nft delete table inet {TABLE}", check=True)
        assert TABLE not in machine.sh("nft list tables").stdout


def blocked(run: Run) -> list[tuple[str, str]]:
    return sorted((f["node"], f["message"].split(";")[0]) for f in run.findings("node.reach"))


def listeners_in(machine: Machine) -> str:
    # `[r]` keeps pgrep from matching the shell that runs it.
    return machine.sh(f"pgrep -af '[{LISTENER_MARK[0]}]{LISTENER_MARK[1:]}'").stdout


def no_listener_left(bed: Testbed) -> None:
    for machine in nodes(bed):
        found = listeners_in(machine)
        assert found == "", (machine.name, found)
        sockets = machine.sh("ss -Hltun").stdout
        for _, port in PORTS:
            assert f":{port} " not in sockets, (machine.name, sockets)


def test_tcp_2380_dropped_from_node1_to_node3_is_that_pair_only(
    testbed: Testbed, tmp_path: Path
) -> None:
    node1, _, node3 = nodes(testbed)
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
    with nft_drop(node3, f"ip saddr {node1.address} tcp dport 2380"):
        run = preflight(testbed, spec)
    assert run.code == 1
    assert run.errors() == [("node.reach", "node-1")], run.findings(severity="error")
    assert blocked(run) == [("node-1", "from node-1 to node-3: TCP 2380 dropped")]
    (finding,) = run.findings("node.reach")
    assert finding["value"] == "to node-3: TCP 2380 dropped"
    assert f"from {node1.address} to {node3.address}" in finding["fix"]
    # Every other pair and port was open, the reverse direction included.
    others = [
        p for p in run.doc["pairs"] if (p["from"], p["to"], p["port"]) != ("node-1", "node-3", 2380)
    ]
    assert len(others) == 35 and {p["result"] for p in others} == {"open"}
    no_listener_left(testbed)


def test_udp_8472_dropped_into_node2(testbed: Testbed, tmp_path: Path) -> None:
    node2 = testbed.machine("node-2")
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
    with nft_drop(node2, "udp dport 8472"):
        run = preflight(testbed, spec)
    assert run.code == 1
    assert run.errors() == [("node.reach", "node-1"), ("node.reach", "node-3")], run.findings(
        severity="error"
    )
    assert blocked(run) == [
        ("node-1", "from node-1 to node-2: UDP 8472 dropped"),
        ("node-3", "from node-3 to node-2: UDP 8472 dropped"),
    ]
    no_listener_left(testbed)


def test_listeners_ran_during_the_run_and_are_gone_after(testbed: Testbed, tmp_path: Path) -> None:
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
    # The detector finds a listener that runs: the program, started by hand (its stdin a
    # pipe that stays open, as the SSH channel's does; /dev/null would end it at once).
    node1 = testbed.machine("node-1")
    by_hand = pairs.listener_argv("python3", ["tcp:2379"]).replace(" 60 ", " 30 ")
    node1.sh(f"systemd-run --unit=by-hand-listener sh -c {shlex.quote('sleep 30 | ' + by_hand)}",
             check=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while LISTENER_MARK not in listeners_in(node1):
            assert time.monotonic() < deadline, "the listener started by hand never showed"
            time.sleep(0.1)
    finally:
        node1.sh("systemctl stop by-hand-listener")
    no_listener_left(testbed)
    run = preflight(testbed, spec)
    for name in NODES:
        listener = run.doc["listeners"][name]
        # Bound on every probe port (nothing listened there before) and ended when told.
        assert sorted(listener["ports"]) == sorted(f"{proto}:{port}" for proto, port in PORTS)
        assert listener["stopped"] is True
    no_listener_left(testbed)


def test_a_port_already_served_is_probed_against_its_owner(
    testbed: Testbed, tmp_path: Path
) -> None:
    node3 = testbed.machine("node-3")
    node3.sh("systemd-run --unit=owner-9345 python3 -m http.server 9345", check=True)
    try:
        spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
        run = preflight(testbed, spec)
    finally:
        node3.sh("systemctl stop owner-9345")
    assert "tcp:9345" not in run.doc["listeners"]["node-3"]["ports"]
    to_9345 = [p["result"] for p in run.doc["pairs"] if p["to"] == "node-3" and p["port"] == 9345]
    assert to_9345 == ["open", "open"]
    assert run.errors() == [("node.ports_free", "node-3")]
    no_listener_left(testbed)


def test_the_rancher_hostname_as_each_node_resolves_it(testbed: Testbed, tmp_path: Path) -> None:
    node1, node2, _ = nodes(testbed)
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
    lb = testbed.workstation.address
    saved = {m.name: m.sh("cat /etc/hosts").stdout for m in (node1, node2)}
    node1.sh("echo '198.18.99.99 rancher.rke2ha.test' >> /etc/hosts", check=True)
    node2.sh(f"echo '{lb} rancher.rke2ha.test' >> /etc/hosts", check=True)
    try:
        run = preflight(testbed, spec, "--node", "node-1")
        run2 = preflight(testbed, spec, "--node", "node-2")
    finally:
        for machine in (node1, node2):
            machine.sh("cat > /etc/hosts", input=saved[machine.name], check=True)
    assert run.errors() == [("node.resolve", "node-1")]
    (wrong,) = run.findings("node.resolve")
    assert wrong["value"] == "rancher.rke2ha.test -> 198.18.99.99"
    assert f"not the load balancer ({lb})" in wrong["message"]
    assert run2.code == 0 and run2.findings("node.resolve") == []
    checks = {c["id"]: c for c in run2.node("node-2")["checks"]}
    assert checks["node.resolve"] == {
        "id": "node.resolve", "status": "pass", "value": f"rancher.rke2ha.test -> {lb}",
    }  # fmt: skip
