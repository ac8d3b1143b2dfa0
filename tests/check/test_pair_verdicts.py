"""The keepalived pair's checks on hand-made host views, and the host script's parser on
real output: `show stat` captured from HAProxy 2.6.12 (Debian bookworm, the test machines'
version) with node-1 UP, node-2 DOWN and node-3 drained (`data/haproxy-2.6-show-stat.csv`),
and the script itself run here against a real HAProxy and this machine's loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import free_port

from rke2ha.check import verdicts_pair as vp
from rke2ha.check.lbdrill import FAULT_WORDS
from rke2ha.check.lbdrill_run import inject_command, undo_command
from rke2ha.check.pair_probe import pair_target
from rke2ha.check.pair_state import (
    HostView,
    holds_address,
    parse_show_stat,
    parse_view,
    view_script,
)
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

DATA = Path(__file__).parent / "data"
VIP = "198.18.200.10"
NODES = ("node-1", "node-2", "node-3")
ALL_UP = {"rke2ha_443": dict.fromkeys(NODES, "UP"), "rke2ha_80": dict.fromkeys(NODES, "UP")}


def view(name: str, **kw: object) -> HostView:
    values: dict[str, object] = {
        "keepalived": "active",
        "engine": "active",
        "vrrp_state": "BACKUP",
        "servers": ALL_UP,
    }
    values.update(kw)
    return HostView(name, **values)  # type: ignore[arg-type]


def output(addr: str, units: str, vrrp: str, stat: str) -> str:
    mark = "==rke2ha-pair "
    return f"{mark}addr\n{addr}\n{mark}units\n{units}\n{mark}vrrp\n{vrrp}\n{mark}stat\n{stat}\n"


# ---- parsing -----------------------------------------------------------------------------


def test_show_stat_of_a_real_haproxy_gives_each_servers_status() -> None:
    text = (DATA / "haproxy-2.6-show-stat.csv").read_text()
    assert parse_show_stat(text.splitlines()) == {
        "rke2ha_443": {"node-1": "UP", "node-2": "DOWN", "node-3": "DRAIN"}
    }


def test_the_address_is_held_only_when_the_interface_carries_exactly_it() -> None:
    lines = [
        "2: eth0    inet 198.18.0.12/16 brd 198.18.255.255 scope global eth0\\       valid_lft",
        "2: eth0    inet 198.18.200.10/32 scope global eth0\\       valid_lft forever",
    ]
    assert holds_address(lines, VIP)
    assert not holds_address(lines[:1], VIP)
    assert not holds_address(["2: eth0    inet 198.18.200.101/32 scope global eth0"], VIP)
    assert holds_address(["2: eth0    inet6 fd00::10/128 scope global"], "fd00::10")


def test_parse_view_reads_units_last_transition_and_servers() -> None:
    stat = (DATA / "haproxy-2.6-show-stat.csv").read_text()
    text = output(
        f"2: eth0    inet {VIP}/32 scope global eth0",
        "active\nactive",
        "(rke2ha_rancher) Entering MASTER STATE",
        "> show stat\n" + stat,
    )
    seen = parse_view("lb-a", text, VIP)
    assert seen.reached and seen.holds_vip
    assert (seen.keepalived, seen.engine, seen.vrrp_state) == ("active", "active", "MASTER")
    assert seen.servers["rke2ha_443"]["node-2"] == "DOWN"
    assert seen.stat_error is None


def test_parse_view_of_a_host_whose_haproxy_is_stopped() -> None:
    refused = "FileNotFoundError: [Errno 2] No such file or directory"
    text = output("2: eth0    inet 198.18.0.12/16 scope global eth0", "active\ninactive", "",
                  f"Traceback (most recent call last):\n{refused}")  # fmt: skip
    seen = parse_view("lb-b", text, VIP)
    assert not seen.holds_vip and seen.engine == "inactive" and seen.vrrp_state is None
    assert seen.servers == {} and seen.stat_error == refused


def test_a_stopped_keepalived_has_no_vrrp_state_whatever_it_logged_last() -> None:
    text = output("", "inactive\nactive", "(rke2ha_rancher) Entering MASTER STATE", "")
    seen = parse_view("lb-a", text, VIP)
    assert seen.keepalived == "inactive" and seen.vrrp_state is None


def test_output_without_the_sections_is_an_error_not_a_guess() -> None:
    seen = parse_view("lb-a", "sh: 1: ip: not found\n", VIP)
    assert not seen.reached and "lacks addr, units, vrrp, stat" in (seen.error or "")


def test_the_script_on_this_machine_against_a_real_haproxy(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed here")
    sock = tmp_path / "admin.sock"
    port = free_port("127.0.93.10")
    config = tmp_path / "h.cfg"
    config.write_text(
        f"global\n    stats socket {sock} mode 600 level admin\n"
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\n"
        f"listen rke2ha_443\n    bind 127.0.93.10:{port}\n"
        f"    server node-1 127.0.93.11:{port}\n"  # no `check`: status `no check`
    )
    proc = subprocess.Popen([haproxy, "-f", str(config), "-db"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        done = subprocess.run(
            ["sh", "-c", view_script("lo", str(sock))], capture_output=True, text=True, timeout=30
        )
    finally:
        proc.terminate()
        proc.wait(10)
    assert done.returncode == 0, done.stderr
    seen = parse_view(os.uname().nodename, done.stdout, "127.0.0.1")
    assert seen.reached and seen.holds_vip  # lo carries 127.0.0.1
    assert seen.servers == {"rke2ha_443": {"node-1": "no check"}}, done.stdout
    assert not parse_view("x", done.stdout, "127.0.0.2").holds_vip


# ---- lb.pair.vip -------------------------------------------------------------------------


def test_one_holder_passes_and_names_it() -> None:
    result = vp.vip_holder([view("lb-a", holds_vip=True, vrrp_state="MASTER"), view("lb-b")], VIP)
    assert result.ok and result.id == "lb.pair.vip" and result.rule == "check.lb.pair.vip"
    assert result.detail.startswith(f"lb-a holds {VIP} (keepalived active, MASTER")
    assert "standby lb-b" in result.detail


def test_no_holder_fails_with_each_hosts_state() -> None:
    result = vp.vip_holder([view("lb-a", keepalived="inactive"), view("lb-b", vrrp_state="FAULT")],
                           VIP)  # fmt: skip
    assert result.failed
    assert "no host holds" in result.detail
    assert "lb-a: keepalived inactive" in result.detail and "FAULT" in result.detail
    assert "systemctl start keepalived.service" in result.fix


def test_two_holders_is_split_brain() -> None:
    result = vp.vip_holder([view("lb-a", holds_vip=True), view("lb-b", holds_vip=True)], VIP)
    assert result.failed and "split brain" in result.detail
    assert "IP protocol 112" in result.fix


def test_a_host_that_cannot_be_read_fails_both_pair_checks_naming_it() -> None:
    views = [view("lb-a", holds_vip=True), HostView("lb-b", error="no SSH login within 5s")]
    for result in (vp.vip_holder(views, VIP), vp.standby_ready(views)):
        assert result.failed and "lb-b" in result.detail and "no SSH login" in result.detail
        assert "lb-b" in result.fix


# ---- lb.pair.standby ---------------------------------------------------------------------


def test_a_ready_standby_lists_its_up_nodes() -> None:
    result = vp.standby_ready([view("lb-a", holds_vip=True), view("lb-b")])
    assert result.ok and result.detail.startswith("lb-b would take over")
    assert "node-1, node-2, node-3 UP" in result.detail


@pytest.mark.parametrize(
    ("standby", "said", "fix"),
    [
        (view("lb-b", keepalived="inactive"), "keepalived is inactive",
         "systemctl start keepalived.service` on lb-b"),
        (view("lb-b", vrrp_state="FAULT"), "FAULT", "journalctl"),
        (view("lb-b", engine="failed", servers={}), "haproxy is failed",
         "systemctl start haproxy.service` on lb-b"),
        (view("lb-b", servers={"rke2ha_443": dict.fromkeys(NODES, "DOWN")}),
         "no node UP behind 443", "reachable from lb-b"),
        (view("lb-b", servers={"rke2ha_443": dict.fromkeys(NODES, "DRAIN")}),
         "no node UP behind 443", "lb enable"),
    ],
)  # fmt: skip
def test_a_standby_that_would_not_take_over_fails(standby: HostView, said: str, fix: str) -> None:
    result = vp.standby_ready([view("lb-a", holds_vip=True), standby])
    assert result.failed and said in result.detail and fix in result.fix
    assert "would not take over from lb-a" in result.detail


def test_one_node_up_behind_443_is_enough_for_the_standby() -> None:
    servers = {"rke2ha_443": {"node-1": "DOWN", "node-2": "UP 1/2", "node-3": "MAINT"}}
    assert vp.standby_ready([view("lb-a", holds_vip=True), view("lb-b", servers=servers)]).ok


def test_no_single_holder_skips_the_standby_check() -> None:
    result = vp.standby_ready([view("lb-a"), view("lb-b")])
    assert result.status == "skip" and "lb.pair.vip" in result.detail


# ---- lb.host.<name> ----------------------------------------------------------------------


def test_every_node_up_on_every_backend_passes_with_each_state() -> None:
    result = vp.host_nodes(view("lb-a"), NODES)
    assert result.ok and result.id == "lb.host.lb-a"
    assert "node-2: 443 UP, 80 UP" in result.detail


def test_a_drained_node_is_reported_not_failed_and_a_down_one_fails() -> None:
    servers = {"rke2ha_443": {"node-1": "UP", "node-2": "DRAIN", "node-3": "DOWN 1/2"}}
    result = vp.host_nodes(view("lb-a", servers=servers), NODES)
    assert result.failed
    assert "node-2: 443 DRAIN" in result.detail
    assert "node-3 443 DOWN 1/2" in result.fix and "node-2" not in result.fix


def test_a_node_haproxy_does_not_list_fails() -> None:
    servers = {"rke2ha_443": {"node-1": "UP", "node-2": "UP"}}
    result = vp.host_nodes(view("lb-a", servers=servers), NODES)
    assert result.failed and "node-3 443 absent" in result.fix


def test_a_host_without_backends_says_why() -> None:
    result = vp.host_nodes(view("lb-b", engine="inactive", servers={}, stat_error="refused"), NODES)
    assert result.failed and "refused" in result.detail
    assert "systemctl start haproxy.service" in result.fix


def test_pair_results_order() -> None:
    views = [view("lb-a", holds_vip=True), view("lb-b")]
    ids = [r.id for r in vp.pair_results(views, VIP, NODES)]
    assert ids == ["lb.pair.vip", "lb.pair.standby", "lb.host.lb-a", "lb.host.lb-b"]


# ---- an nginx pair ------------------------------------------------------------------------


def nginx_pair_spec(tmp_path: Path) -> Spec:
    auth = tmp_path / "vrrp.secret"
    auth.write_text("pw123456\n")
    auth.chmod(0o600)
    doc = {
        "name": "rancher",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [{"name": f"node-{i}", "address": f"10.0.1.{10 + i}"} for i in (1, 2, 3)],
        "load_balancer": {
            "engine": "nginx",
            "address": "10.0.0.10",
            "hosts": [{"name": "lb-1", "address": "10.0.0.11"},
                      {"name": "lb-2", "address": "10.0.0.12"}],
            "vrrp": {"auth_file": str(auth)},
        },
        "dns": {"provider": "manual", "zone": "example.com"},
        "ssh": {"user": "rke2ha", "known_hosts": "kh"},
    }  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


def nginx_view(name: str, **kw: object) -> HostView:
    return view(name, engine_name="nginx", servers={}, stat_error=NO_NODE, **kw)


NO_NODE = "per-node state: not available from nginx"


def test_an_nginx_pair_reads_nginx_service_and_no_haproxy_socket(tmp_path: Path) -> None:
    pair = pair_target(nginx_pair_spec(tmp_path))
    assert pair is not None and pair.engine == "nginx" and pair.engine_unit == "nginx.service"
    script = pair.script()
    assert "systemctl is-active keepalived.service nginx.service" in script
    assert "haproxy" not in script and "show stat" not in script


def test_the_nginx_script_on_this_machine_gives_every_section(tmp_path: Path) -> None:
    pair = pair_target(nginx_pair_spec(tmp_path))
    assert pair is not None
    script = view_script("lo", pair.socket_path, pair.engine)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    seen = parse_view("lb-1", done.stdout, "127.0.0.1", "nginx")
    assert seen.reached and seen.holds_vip and seen.engine_name == "nginx"
    assert seen.servers == {} and seen.stat_error == NO_NODE


def test_an_nginx_standby_is_judged_by_its_unit_and_keepalived() -> None:
    holder = nginx_view("lb-1", holds_vip=True, vrrp_state="MASTER")
    ready = vp.standby_ready([holder, nginx_view("lb-2")])
    assert ready.ok, ready.detail
    assert ready.detail == (
        "lb-2 would take over: keepalived active, BACKUP, nginx active; " + NO_NODE
    )
    stopped = vp.standby_ready([holder, nginx_view("lb-2", engine="inactive")])
    assert not stopped.ok and "nginx is inactive" in stopped.detail
    assert "`systemctl start nginx.service` on lb-2" in stopped.fix
    assert "haproxy" not in (stopped.detail + stopped.fix).lower()
    fault = vp.standby_ready([holder, nginx_view("lb-2", vrrp_state="FAULT")])
    assert not fault.ok and "FAULT" in fault.detail


def test_an_nginx_host_says_per_node_state_is_not_available() -> None:
    result = vp.host_nodes(nginx_view("lb-1"), NODES)
    assert result.ok and result.detail == f"nginx active on lb-1; {NO_NODE}"
    down = vp.host_nodes(nginx_view("lb-1", engine="failed"), NODES)
    assert not down.ok and "systemctl start nginx.service" in down.fix


def test_the_drill_stops_the_pairs_own_engine_unit(tmp_path: Path) -> None:
    pair = pair_target(nginx_pair_spec(tmp_path))
    assert pair is not None
    assert inject_command("engine", pair.engine_unit) == "systemctl stop nginx.service"
    assert undo_command("engine", pair.engine_unit) == "systemctl start nginx.service"
    assert inject_command("freeze", pair.engine_unit) == (
        "systemctl kill --signal=SIGSTOP keepalived.service nginx.service"
    )
    assert undo_command("engine", "haproxy.service") == "systemctl start haproxy.service"
    assert FAULT_WORDS["engine"].format(engine=pair.engine) == "nginx stopped (systemctl stop)"


def test_at_layer_7_the_standby_is_judged_on_the_ingress_backend() -> None:
    """Layer 7 HAProxy has no `rke2ha_443`: 80 and 443 share `rke2ha_ingress`."""
    up = {"rke2ha_ingress": dict.fromkeys(NODES, "UP"), "rke2ha_6443": {}}
    result = vp.standby_ready([view("lb-a", holds_vip=True), view("lb-b", servers=up)])
    assert result.ok and "node-1, node-2, node-3 UP" in result.detail
    down = {"rke2ha_ingress": dict.fromkeys(NODES, "DOWN")}
    result = vp.standby_ready([view("lb-a", holds_vip=True), view("lb-b", servers=down)])
    assert result.failed and "no node UP behind 443" in result.detail
