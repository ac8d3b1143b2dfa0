"""`rke2ha check` and `check --drill --lb` on a keepalived pair of load balancer hosts, on the
test machines, through the CLI as a user runs it from the workstation.

Two machines of the test's own run HAProxy and keepalived (`rke2ha up`); the three shared
node machines each run, after `up` (its pre-flight wants their ports free), a small server
HAProxy's checks accept on every backend: plain HTTP on 80 (the ingress check of 80/443)
and TLS on 6443 and 9345 answering 200 `pong` (the apiserver and supervisor checks). No
RKE2 runs there, so the node and Rancher checks of `check` fail by design; what is asserted
is the pair's checks (`lb.pair.*`, `lb.host.*`) and the path through the virtual IP.

Then: both keepalived stopped makes `lb.pair.vip` fail with no holder; the drill's figures
meet the targets (address moved < 3 s after HAProxy stopped, < 5 s after the holder's
keepalived and HAProxy froze, 0 failed requests started after the move, no flap back); and
a real whole-machine freeze of the holder (every process SIGSTOPped) moves it in < 5 s too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.lbhost_live.test_lbhost_live import (
    NODES,
    VIP,
    VRRP_PASSWORD,
    holders,
    pair_snapshot,
    rke2ha,
    stats,
    wait_holders,
    write_pair_spec,
)
from tests.support.lbnodes import checked_servers
from tests.support.machines import Machine, Testbed
from tests.support.machines.testbed import TIMINGS

pytestmark = pytest.mark.root


def all_up(machine: Machine, timeout: float = 30.0) -> dict[tuple[str, str], str]:
    """HAProxy's server states on `machine` once every node is UP on every backend."""
    deadline = time.monotonic() + timeout
    seen = stats(machine)
    while time.monotonic() < deadline:
        if len(seen) == 4 * len(NODES) and all(st == "UP" for st in seen.values()):
            break
        time.sleep(0.3)
        seen = stats(machine)
    return seen


def check_json(bed: Testbed, spec: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    code, out = rke2ha(bed, "check", "-f", str(spec), "--json", *args, timeout=timeout)
    assert code in (0, 1), out
    doc: dict[str, Any] = json.loads(out[out.index("{") :])
    return doc


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["id"]: check for check in doc["checks"]}


PAIR_IDS = ("lb.pair.vip", "lb.pair.standby")


def wait_ready(bed: Testbed, spec: Path, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """`check` until both pair checks pass (keepalived's BACKUP comes after `rise` passes)."""
    deadline = time.monotonic() + timeout
    checks = by_id(check_json(bed, spec))
    while not all(checks[i]["ok"] for i in PAIR_IDS) and time.monotonic() < deadline:
        time.sleep(1)
        checks = by_id(check_json(bed, spec))
    return checks


def test_check_judges_the_pair_and_the_drill_meets_the_failover_targets(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lbp-a") as lb_a, testbed.extra_machine("lbp-b") as lb_b:
        pair = [lb_a, lb_b]
        before = {m.name: pair_snapshot(m) for m in pair}
        spec = write_pair_spec(testbed, tmp_path / "spec.yaml", pair, VRRP_PASSWORD)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out

        with checked_servers(testbed, tmp_path):
            assert len(wait_holders(pair, 1, 30)) == 1
            for m in pair:
                states = all_up(m)
                assert set(states.values()) == {"UP"} and len(states) == 12, (m.name, states)
            checks = wait_ready(testbed, spec)
            (holder_name,) = holders(pair)
            standby_name = next(m.name for m in pair if m.name != holder_name)

            # The pair's checks pass and name who holds the address.
            code, out = rke2ha(testbed, "check", "-f", str(spec))
            print(out)  # the README's example (pytest -s)
            for check_id in (*PAIR_IDS, f"lb.host.{lb_a.name}", f"lb.host.{lb_b.name}"):
                assert checks[check_id]["status"] == "pass", checks[check_id]
                assert check_id in out, out
            assert checks["lb.pair.vip"]["detail"].startswith(f"{holder_name} holds {VIP}")
            assert checks["lb.pair.standby"]["detail"].startswith(f"{standby_name} would take over")
            assert (
                "node-2: 443 UP, 6443 UP, 80 UP, 9345 UP"
                in checks[f"lb.host.{lb_a.name}"]["detail"]
            )
            assert checks["lb.port.80"]["ok"], checks["lb.port.80"]

            # keepalived stopped on both: nobody holds the address, and check says so.
            for m in pair:
                m.sh("systemctl stop keepalived.service", check=True)
            try:
                assert wait_holders(pair, 0, 10) == []
                doc = check_json(testbed, spec)
                assert doc["ok"] is False
                vip = by_id(doc)["lb.pair.vip"]
                assert vip["status"] == "fail", vip
                assert f"no host holds {VIP}" in vip["detail"]
                assert "keepalived inactive" in vip["detail"]
                assert "systemctl start keepalived.service" in vip["fix"]
                assert by_id(doc)["lb.pair.standby"]["status"] == "skip"
            finally:
                for m in pair:
                    m.sh("systemctl start keepalived.service", check=True)
            assert len(wait_holders(pair, 1, 30)) == 1
            ready = wait_ready(testbed, spec)
            assert all(ready[i]["ok"] for i in PAIR_IDS), ready

            # The drill: engine stop, then freeze, of whichever host holds the address.
            started = time.monotonic()
            doc = check_json(testbed, spec, "--drill", "--lb", timeout=180)
            drill = doc["drill"]
            TIMINGS.append(f"check --drill --lb: {time.monotonic() - started:.1f}s")
            engine, freeze = drill["faults"]
            for fault in (engine, freeze):
                TIMINGS.append(
                    f"pair drill {fault['fault']}: address moved {fault['holder']} -> "
                    f"{fault['peer']} {fault['moved_after']}s after the fault (target < "
                    f"{fault['target_seconds']:g}s); {fault['requests']} requests, "
                    f"{fault['lost']} lost before the move, {fault['failed_after_move']} "
                    f"failed after it; came back after restore: {fault['came_back']}"
                )
            print(json.dumps(drill, indent=1))
            journals = {
                m.name: m.sh(
                    "journalctl -u keepalived.service -n 80 --no-pager -o short-precise"
                ).stdout
                for m in pair
            }
            assert drill["ok"] is True, (drill, holders(pair), journals)
            assert (engine["fault"], freeze["fault"]) == ("engine", "freeze")
            assert engine["moved_after"] is not None and engine["moved_after"] < 3.0, engine
            assert freeze["moved_after"] is not None and freeze["moved_after"] < 5.0, freeze
            for fault in (engine, freeze):
                assert fault["failed_after_move"] == 0, fault
                assert fault["flapped_back"] is False, fault
                assert fault["requests"] == 160, fault
                # The stream saw the outage: some requests went to the faulted host first.
                assert fault["lost"] >= 1, fault
            assert engine["came_back"] is False, engine  # nopreempt
            # The second fault hit the host the first one moved the address to.
            assert freeze["holder"] == engine["peer"], drill
            assert drill["ok"] is True, drill
            # Every fault was undone: both engines and keepalived run, one holder.
            for m in pair:
                units = "keepalived.service haproxy.service"
                assert m.sh(f"systemctl is-active {units}").stdout.split() == ["active"] * 2
            assert len(wait_holders(pair, 1, 10)) == 1

            # A real whole-machine freeze of the holder: the peer takes the address.
            ready = wait_ready(testbed, spec)
            assert all(ready[i]["ok"] for i in PAIR_IDS), ready
            (held,) = holders(pair)
            frozen = next(m for m in pair if m.name == held)
            peer = next(m for m in pair if m is not frozen)
            frozen.freeze()
            stopped = time.monotonic()
            try:
                deadline = stopped + 10
                while VIP not in peer.sh("ip -4 -o addr show dev eth0").stdout:
                    assert time.monotonic() < deadline, "the peer never took the address"
                    time.sleep(0.05)
                seconds = time.monotonic() - stopped
            finally:
                frozen.thaw()
            TIMINGS.append(
                f"pair: whole machine {frozen.name} frozen -> {peer.name} held {VIP} "
                f"{seconds:.2f}s later"
            )
            assert seconds < 5.0, seconds
            assert len(wait_holders(pair, 1, 15)) == 1

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            assert pair_snapshot(m) == before[m.name]
