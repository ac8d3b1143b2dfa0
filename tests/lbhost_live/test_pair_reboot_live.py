"""Two load balancer hosts sharing a keepalived virtual IP, on the test machines, through
a cluster being bootstrapped and through reboots of whole LB machines:

- the nodes answer only what the first RKE2 server answers before any ingress runs: the
  supervisor's `/ping` on 9345 and the apiserver's `/readyz` (401, anonymous) on 6443;
  nothing on 80/443. The pair must still hold the address (the other servers register
  through it on 9345), and traffic through it reaches a node;
- a reboot of the holder (its container stopped and booted again): the address moves to
  the peer, and the rebooted host brings haproxy and keepalived back on their own (enabled
  units), exactly one host holds the address after, and the rebooted host takes it when
  the peer is rebooted in turn (it came back as a working standby);
- a keepalived config that keepalived rejects never replaces the running one;
- `down` leaves both machines as they were: the list of packages, unit files, every file
  under /etc with its digest, the running services and the addresses, before and after.

The node stand-ins are started after `up`: the pre-flight that `up` runs wants 6443/9345
free on the nodes. They are bounded (RuntimeMaxSec) and stopped at the end.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from tests.lbhost_live.test_lbhost_live import (
    UNIT,
    VIP,
    VRRP_CONFIG,
    VRRP_UNIT,
    holders,
    rke2ha,
    stats,
    wait_holders,
    wait_holders_exactly,
    write_pair_spec,
)
from tests.support.lbnodes import (
    NODES,
    bootstrap_servers,
    listing,
    rejected,
    stays,
    through,
    wait_active,
)
from tests.support.machines import Machine, Testbed
from tests.support.machines.testbed import TIMINGS

pytestmark = pytest.mark.root


def wait_nodes_up(machine: Machine, backend: str, timeout: float = 30.0) -> list[str]:
    """The servers of `backend` the host's HAProxy reports UP, once all of NODES are."""
    deadline = time.monotonic() + timeout
    up: list[str] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(ValueError):  # the stats page may not answer yet
            up = sorted(s for (b, s), st in stats(machine).items() if b == backend and st == "UP")
        if up == list(NODES):
            break
        time.sleep(0.3)
    return up


def test_pair_holds_the_address_while_bootstrapping_and_survives_reboots(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb-r1") as lb_1, testbed.extra_machine("lb-r2") as lb_2:
        pair = [lb_1, lb_2]
        before = {m.name: listing(m) for m in pair}
        spec = write_pair_spec(testbed, tmp_path / "spec.yaml", pair, "Rb8kLm2q")
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out

        with bootstrap_servers(testbed, tmp_path):
            # No node serves 80/443, yet one host holds the address: 9345/6443 are UP.
            held = wait_holders(pair, 1, 30)
            assert len(held) == 1, held
            for m in pair:
                assert wait_nodes_up(m, "rke2ha_9345") == list(NODES), m.name
                assert not any(st == "UP" for (b, _), st in stats(m).items() if b == "rke2ha_443")
            assert through(testbed, VIP, 9345, "/ping")[0] == "200 pong"
            answer, node = through(testbed, VIP, 6443, "/readyz")
            assert answer.startswith("401") and node in NODES, (answer, node)

            # A config keepalived rejects is checked on the host and never moved into place.
            holder = next(m for m in pair if m.name == held[0])
            config = holder.sh(f"sha256sum {VRRP_CONFIG}").stdout
            pid = holder.sh(f"systemctl show -p MainPID --value {VRRP_UNIT}").stdout
            bad = "vrrp_instance broken {\n    virtual_router_id 999\n    priority 150\n}\n"
            said = rejected(testbed, spec, holder.name, "keepalived", bad)
            assert "/usr/sbin/keepalived rejects the rendered config" in said, said
            assert "999" in said, said  # keepalived names the value it refuses
            assert "DONE: upload\n" in said, said
            assert holder.sh(f"sha256sum {VRRP_CONFIG}").stdout == config
            assert holder.sh(f"systemctl show -p MainPID --value {VRRP_UNIT}").stdout == pid
            assert holder.sh(f"ls {VRRP_CONFIG}.rke2ha-new").returncode != 0
            assert holders(pair) == [holder.name]

            # Reboot the holder, then the other: each time the address moves to the peer,
            # the rebooted host's units come back by themselves, and one host holds it.
            for _ in range(2):
                holder = next(m for m in pair if m.name == holders(pair)[0])
                other = next(m for m in pair if m is not holder)
                holder.stop()
                stopped = time.monotonic()
                assert wait_holders_exactly([other], [other.name], 15) == [other.name]
                moved = time.monotonic() - stopped
                started = time.monotonic()
                holder.start()
                booted = time.monotonic() - started
                assert not any(u in n for n in holder.boot_notes for u in ("haproxy", "keepalived"))
                assert wait_active(holder, (UNIT, VRRP_UNIT)) == ["active", "active"]
                back = time.monotonic() - started
                assert holder.sh(f"systemctl is-enabled {UNIT} {VRRP_UNIT}").stdout.split() == [
                    "enabled",
                    "enabled",
                ]
                assert wait_nodes_up(holder, "rke2ha_9345") == list(NODES), holder.name
                stays(pair, VIP, [other.name], 4)  # exactly one holder; no pre-emption back
                assert through(testbed, VIP, 9345, "/ping")[0] == "200 pong"
                TIMINGS.append(
                    f"LB pair reboot of {holder.name}: the virtual IP on {other.name} "
                    f"{moved:.2f}s after the machine stopped; booted again in {booted:.1f}s, "
                    f"haproxy and keepalived active {back:.1f}s after the start"
                )

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            after = listing(m)
            assert after == before[m.name], (
                m.name,
                sorted(set(after) ^ set(before[m.name])),
            )
