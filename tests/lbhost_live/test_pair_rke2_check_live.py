"""The whole path through a keepalived pair, on the test machines, through the CLI: two load
balancer machines (HAProxy + keepalived, the virtual IP) in front of the three node
machines; `rke2ha up` installs the pair, then RKE2 (the stand-in, air-gap: RKE2's layout
and unit over a real etcd) and Rancher on the nodes, every server registering through the
virtual IP by the hostname; `rke2ha check` then passes (exit 0) through the virtual IP,
the pair's own checks included; `down --uninstall-rke2` leaves both pair machines as
they were and the shared nodes without RKE2.

Reused from the other live suites: the pair's spec block and its probes
(test_lbhost_live), the stand-in's air-gap artifacts with a short learner tick, the BIND
server `up` publishes the hostname in (rfc2136), and the user's CA the workstation trusts
(rke2_up_live)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.lbhost_live.test_lbhost_live import (
    VIP,
    VRRP_PASSWORD,
    holders,
    pair_snapshot,
    wait_holders,
    write_pair_spec,
)
from tests.lbhost_live.test_pair_check_live import PAIR_IDS
from tests.rke2_standin.conftest import sh
from tests.rke2_up_live.standin_cluster import (
    HOSTNAME,
    NODES,
    VERSION,
    ZONE,
    cli,
    standin_nodes,
    write_spec,
)
from tests.rke2_up_live.userca import make_ca, place
from tests.rke2_up_live.userdns import user_dns
from tests.support.machines import Testbed
from tests.support.machines.testbed import TIMINGS
from tests.support.rke2_standin import build_artifacts

pytestmark = pytest.mark.root


@pytest.mark.timeout(300)  # the run takes ~45 s; room for a busy shared machine
def test_up_through_the_pair_installs_rke2_and_rancher_and_check_passes_through_the_vip(
    testbed: Testbed, tmp_path: Path
) -> None:
    nodes = [testbed.machine(n) for n in NODES]
    with (
        testbed.extra_machine("lbr-a") as lb_a,
        testbed.extra_machine("lbr-b") as lb_b,
        standin_nodes(testbed),
        user_dns(testbed, tmp_path, ZONE, nodes) as dns,
    ):
        pair = [lb_a, lb_b]
        before = {m.name: pair_snapshot(m) for m in pair}
        artifacts = build_artifacts(tmp_path / "artifacts", VERSION)
        spec = write_spec(testbed, dns, tmp_path, artifacts, rancher=True)
        pair_doc = yaml.safe_load(
            write_pair_spec(testbed, tmp_path / "pair.yaml", pair, VRRP_PASSWORD).read_text()
        )
        doc: dict[str, Any] = yaml.safe_load(spec.read_text())
        doc["load_balancer"] = pair_doc["load_balancer"]
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        ca, ca_key = make_ca(tmp_path)
        place(testbed.machine("node-1"), ca, ca_key)
        env = {**os.environ, "SSL_CERT_FILE": str(ca)}
        try:
            began = time.monotonic()
            up = cli(testbed, "up", "-f", str(spec), "--yes", env=env)
            took = time.monotonic() - began
            assert up.returncode == 0, up.stdout + up.stderr
            assert VRRP_PASSWORD[:8] not in up.stdout + up.stderr
            TIMINGS.append(f"rke2ha up through the pair (pair, 3 stand-in servers, Rancher): "
                           f"{took:.1f}s")  # fmt: skip

            # Every server registered through the virtual IP, by the hostname the BIND
            # server answers with the virtual IP.
            for machine in nodes:
                answer = sh(machine, f"getent ahostsv4 {HOSTNAME}").split()
                assert answer[0] == VIP, (machine.name, answer)
                config = yaml.safe_load(sh(machine, "cat /etc/rancher/rke2/config.yaml"))
                if machine.name != "node-1":
                    assert config["server"] == f"https://{HOSTNAME}:9345", config
                assert VIP in config["tls-san"], config
                assert sh(machine, "systemctl is-active rke2-server").strip() == "active"
            for m in pair:
                units = "haproxy.service keepalived.service"
                assert sh(m, f"systemctl is-enabled {units}").split() == ["enabled"] * 2
                assert sh(m, f"systemctl is-active {units}").split() == ["active"] * 2
            assert len(wait_holders(pair, 1, 15)) == 1

            # `check` through the virtual IP: exit 0; only the websocket skipped (a fresh
            # Rancher has no API token for /v3/subscribe yet).
            checked = cli(testbed, "check", "-f", str(spec), "--json", timeout=120, env=env)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            results = {c["id"]: c for c in json.loads(checked.stdout)["checks"]}
            not_passed = {k: c["status"] for k, c in results.items() if c["status"] != "pass"}
            assert not_passed == {"rancher.websocket": "skip"}, checked.stdout
            wanted = {*PAIR_IDS, f"lb.host.{lb_a.name}", f"lb.host.{lb_b.name}",
                      "dns.record", "rancher.ping", "tls.certificate", "registration"}  # fmt: skip
            assert wanted <= set(results), sorted(results)
            (holder,) = holders(pair)
            assert results["lb.pair.vip"]["detail"].startswith(f"{holder} holds {VIP}")
            for m in pair:  # HAProxy on each host sees every node UP on the apiserver port
                detail = results[f"lb.host.{m.name}"]["detail"]
                for node in NODES:
                    assert f"{node}: 443 UP, 6443 UP, 80 UP, 9345 UP" in detail, detail
            narrow = {**env, "COLUMNS": "100"}  # the table as a README can show it
            table = cli(testbed, "check", "-f", str(spec), timeout=120, env=narrow)
            assert table.returncode == 0, table.stdout + table.stderr
            print(table.stdout)  # the README's example (pytest -s)
            TIMINGS.append(f"rke2ha check through the pair: {len(results) - 1} of "
                           f"{len(results)} pass, 1 skipped, exit 0")  # fmt: skip
        finally:
            down = cli(testbed, "down", "-f", str(spec), "--yes", "--uninstall-rke2",
                        timeout=300, env=env)  # fmt: skip
        assert down.returncode == 0, down.stdout + down.stderr
        for machine in nodes:
            assert machine.sh("test -e /usr/local/bin/rke2").returncode != 0, machine.name
        for m in pair:
            assert pair_snapshot(m) == before[m.name], m.name
