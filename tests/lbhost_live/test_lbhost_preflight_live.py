"""`rke2ha preflight` with `load_balancer.hosts`, on the test machines: it logs in to the load
balancer host too, connects from there to every node on every port the load balancer
forwards to (a listener on the nodes takes each free port for the probes, as root for 80
and 443), and checks the load balancer's ports are free on the host unless rke2ha's own
engine holds them. A firewall rule on the host that drops one node port, and a process on
443 of the host, are each one finding naming host, node and port; after `up` the engine
rke2ha runs there is not one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.lbhost_live.test_lbhost_live import rke2ha, write_spec
from tests.support.lbnodes import NODES, nodes
from tests.support.machines import Testbed

pytestmark = pytest.mark.root

TABLE = "rke2ha_lbtest"
SQUATTER = "rke2ha-lbtest-squatter"


def preflight(bed: Testbed, spec: Path) -> tuple[int, dict[str, Any], str]:
    code, out = rke2ha(bed, "preflight", "-f", str(spec), "--json")
    document = json.loads(out[out.index("{") :]) if "{" in out else {}
    return code, document, out


def errors(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (f["id"], f["node"], f["value"])
        for f in document.get("findings", [])
        if f["severity"] == "error"
    ]


def test_preflight_probes_from_the_load_balancer_host_and_checks_its_ports(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb-p") as lb:
        spec = write_spec(testbed, tmp_path / "spec.yaml", lb)
        code, document, out = preflight(testbed, spec)
        assert code == 0, out
        (host,) = document["lb_hosts"]
        assert host["host"] == lb.name and host["reached"], host
        seen = {(p["to"], p["port"]): p["result"] for p in host["probes"]}
        assert seen == {(n, port): "open" for n in NODES for port in (80, 443, 6443, 9345)}
        # The listeners the nodes ran for the probes are gone again.
        for machine in nodes(testbed):
            assert "rke2ha-preflight-listener" not in machine.sh("ps -eo args").stdout
            assert machine.sh("ss -Hltn 'sport = :443'").stdout.strip() == ""
        code, out = rke2ha(testbed, "preflight", "-f", str(spec))
        assert code == 0 and f"{lb.name:<10} load balancer host {lb.address}" in out, out
        assert "12/12 node ports reached" in out, out

        # The host's own firewall drops its connections to node-2's supervisor port.
        node_2 = testbed.machine("node-2")
        lb.sh(
            f"nft add table inet {TABLE} && nft add chain inet {TABLE} out "
            "'{ type filter hook output priority 0; }' && "
            f"nft add rule inet {TABLE} out ip daddr {node_2.address} tcp dport 9345 drop",
            check=True,
        )
        try:
            code, document, out = preflight(testbed, spec)
        finally:
            lb.sh(f"nft delete table inet {TABLE}", check=True)
        assert code == 1, out
        assert errors(document) == [("lbhost.reach", lb.name, "to node-2: TCP 9345 dropped")]
        (finding,) = [f for f in document["findings"] if f["id"] == "lbhost.reach"]
        assert finding["path"] == "load_balancer.hosts[0]"
        assert f"allow TCP 9345 from {lb.name} to node-2" in finding["fix"]

        # Something else holds 443 on the host.
        started = lb.sh(
            f"systemd-run --collect --unit={SQUATTER} -p RuntimeMaxSec=300 "
            "python3 -m http.server --bind 0.0.0.0 443"
        )
        assert started.returncode == 0, started.stderr
        try:
            deadline = 50
            while deadline and "443" not in lb.sh("ss -Hltn 'sport = :443'").stdout:
                deadline -= 1
                lb.sh("sleep 0.1")
            code, document, out = preflight(testbed, spec)
        finally:
            lb.sh(f"systemctl stop {SQUATTER}")
        assert code == 1, out
        ((check, where, value),) = errors(document)
        assert (check, where) == ("lbhost.ports_free", lb.name), errors(document)
        assert value.startswith("TCP 443 held by python3"), value

        # After `up` rke2ha's haproxy holds the ports: that is no finding; `plan` (which runs
        # the same pre-flight first) passes too.
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0 and "nodes and 1 load balancer host(s) ready" in out, out
        try:
            assert "haproxy" in lb.sh("ss -Hltnp 'sport = :443'").stdout
            code, document, out = preflight(testbed, spec)
            assert code == 0 and errors(document) == [], out
            code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
            assert code == 0, out
        finally:
            code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
            assert code == 0, out
