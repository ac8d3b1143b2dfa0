"""Two nginx load balancer hosts sharing a keepalived virtual IP, on the test machines. nginx
has no runtime API, so the track script asks what nginx itself would find: its master runs
(`/run/nginx.pid`) and a node accepts a connection on a load balancer port. With the nodes
answering only 9345/6443 (a first RKE2 server before its ingress) one host holds the address
and traffic through it reaches a node; stopping nginx on the holder moves the address; with
every node port closed neither host holds it; `down` leaves both machines as they were.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.lbhost_live.test_lbhost_live import (
    VIP,
    VRRP_UNIT,
    rke2ha,
    wait_holders,
    wait_holders_exactly,
    write_pair_spec,
)
from tests.support.lbnodes import (
    NODES,
    bootstrap_servers,
    listing,
    stays,
    through,
    wait_active,
)
from tests.support.machines import Testbed
from tests.support.machines.testbed import TIMINGS

pytestmark = pytest.mark.root

UNIT = "nginx.service"


def test_two_nginx_hosts_share_the_address_by_engine_and_node_reach(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb-na") as lb_a, testbed.extra_machine("lb-nb") as lb_b:
        pair = [lb_a, lb_b]
        before = {m.name: listing(m) for m in pair}
        spec = write_pair_spec(testbed, tmp_path / "spec.yaml", pair, "Nx7pQ2wz", engine="nginx")

        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            assert wait_active(m, (UNIT, VRRP_UNIT)) == ["active", "active"], m.name
            track = m.sh("grep 'script \"' /etc/keepalived/keepalived.conf").stdout
            assert "rke2ha-track.py connect /run/nginx.pid" in track, track
        # nginx runs but no node port answers (the pre-flight wanted them free): no holder.
        assert wait_holders(pair, 0, 5) == []

        with bootstrap_servers(testbed, tmp_path):
            held = wait_holders(pair, 1, 30)
            assert len(held) == 1, held
            holder = next(m for m in pair if m.name == held[0])
            other = next(m for m in pair if m is not holder)
            answer, node = through(testbed, VIP, 9345, "/ping")
            assert answer == "200 pong" and node in NODES, (answer, node)

            holder.sh(f"systemctl stop {UNIT}", check=True)
            stopped = time.monotonic()
            moved = wait_holders_exactly(pair, [other.name], 15)
            seconds = time.monotonic() - stopped
            assert moved == [other.name], moved
            TIMINGS.append(
                f"nginx pair: the virtual IP moved {holder.name} -> {other.name} "
                f"{seconds:.2f}s after nginx stopped on {holder.name}"
            )
            assert seconds < 3.0, f"the virtual IP took {seconds:.2f}s to move"
            assert through(testbed, VIP, 9345, "/ping")[0] == "200 pong"
            # Not back to the host whose nginx is stopped.
            stays(pair, VIP, [other.name], 4)
            holder.sh(f"systemctl start {UNIT}", check=True)

        # Every node port closed: no host can serve, the address is given up.
        assert wait_holders(pair, 0, 10) == []

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            after = listing(m)
            assert after == before[m.name], (m.name, sorted(set(after) ^ set(before[m.name])))
