"""The load balancer on a machine of its own (`load_balancer.hosts`), on the test machines:
`up` installs nothing that is there, runs HAProxy as the host's enabled systemd service,
survives a reboot of that machine, never replaces the running config with one HAProxy
rejects, changes nothing the second time, and `down` leaves the machine as it was.

After the reboot the three shared node machines each run a tiny HTTP server on port 80 for
a moment (stopped after), so HAProxy's checks of ports 80/443 (sent to node port 80) find
them up and a request through the load balancer reaches one; 6443 and 9345 have nothing
behind them, so those backends stay down. Not earlier: the pre-flight that `plan` and `up`
run first requires every port RKE2 needs (80 included) to be free on the nodes.
The load balancer host is an extra machine of the test's own, discarded after.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.machines import Machine, Testbed
from tests.support.machines import rootfs as rootfs_mod
from tests.support.machines.testbed import TIMINGS

pytestmark = pytest.mark.root

NODES = ("node-1", "node-2", "node-3")
UNIT = "haproxy.service"
CONFIG = "/etc/haproxy/haproxy.cfg"
WEB_UNIT = "rke2ha-lbtest-web"
WEB = """\
import http.server, socket
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("", 80), Handler).serve_forever()
"""
# Run inside the workstation namespace: the SSH adapter itself, given a config HAProxy rejects.
REJECTED = """\
import base64
import contextlib
import shutil
import subprocess
import sys
from rke2ha.lbhost import remote
from rke2ha.lbhost.decide import ENGINES, up_steps
from rke2ha.specfile import load_spec
from rke2ha.ssh.target import host_targets
spec = load_spec(sys.argv[1])
(target,) = host_targets(spec)
engine = ENGINES["haproxy"]
bad = "global\\n    no-such-keyword 1\\n"
try:
    remote.run(target, engine, lambda facts: up_steps(engine, facts, bad, None)[0], print)
except remote.StepFailed as err:
    print("ERROR:", err)
    print("DONE:", " ".join(s.kind for s in err.done))
    sys.exit(3)
"""


def nodes(bed: Testbed) -> list[Machine]:
    return [bed.machine(n) for n in NODES]


def snapshot(machine: Machine) -> dict[str, str]:
    """What `down` must leave as it found: package, config, leftovers, unit state."""
    script = (
        "echo package=$(dpkg-query -W -f='${Status}' haproxy 2>/dev/null); "
        f"echo config=$(sha256sum {CONFIG} 2>/dev/null | cut -d' ' -f1); "
        f"echo extra=$(ls /etc/haproxy | grep rke2ha); "
        f"echo enabled=$(systemctl is-enabled {UNIT} 2>/dev/null); "
        f"echo active=$(systemctl is-active {UNIT} 2>/dev/null)"
    )
    out = machine.sh(script).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_active(machine: Machine, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = machine.sh(f"systemctl is-active {UNIT}").stdout.strip()
        if state == "active":
            return state
        time.sleep(0.2)
    return state


def stats(machine: Machine) -> dict[tuple[str, str], str]:
    """(backend, server) -> status, from HAProxy's CSV on the host's loopback."""
    code = (
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:8404/;csv', timeout=3).read().decode())"
    )
    out = machine.sh(f'python3 -c "{code}"').stdout
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return {
        (r[0], r[1]): r[17] for r in rows if len(r) > 17 and r[1] not in ("FRONTEND", "BACKEND")
    }


def wait_up(machine: Machine, backend: str, count: int, timeout: float = 20.0) -> list[str]:
    """Names of the servers of `backend` HAProxy reports UP, once there are `count`."""
    deadline = time.monotonic() + timeout
    up: list[str] = []
    while time.monotonic() < deadline:
        up = sorted(s for (b, s), st in stats(machine).items() if b == backend and st == "UP")
        if len(up) >= count:
            break
        time.sleep(0.3)
    return up


_web_runs = itertools.count(1)


@contextlib.contextmanager
def web_on_nodes(testbed: Testbed) -> Iterator[None]:
    """A 200-answering HTTP server on port 80 of each node, bounded, removed after."""
    # A unit name of its own per use: a stopped transient unit can stay loaded a while
    # ("Unit ... was already loaded"), which a second test in the session met on node-2.
    unit = f"{WEB_UNIT}-{next(_web_runs)}"
    for machine in nodes(testbed):
        machine.sh(f"cat > /run/{WEB_UNIT}.py", input=WEB, check=True)
        started = machine.sh(
            f"systemd-run --collect --unit={unit} -p RuntimeMaxSec=900 python3 /run/{WEB_UNIT}.py"
        )
        assert started.returncode == 0, (machine.name, started.stderr)
    try:
        yield
    finally:
        for machine in nodes(testbed):
            machine.sh(f"systemctl stop {unit}; rm -f /run/{WEB_UNIT}.py")
            assert machine.sh(f"systemctl is-active {unit}").stdout.strip() != "active"


@contextlib.contextmanager
def names_on_nodes(bed: Testbed) -> Iterator[dict[str, str]]:
    """`<node>.lbtest` resolvable on every node (its /etc/hosts), not on the load balancer
    host: the nodes are happy, the host (its pre-flight probes, HAProxy) cannot resolve them.
    Each node's /etc/hosts is put back after."""
    names = {m.name: f"{m.name}.lbtest" for m in nodes(bed)}
    lines = "".join(f"{m.address} {names[m.name]}\n" for m in nodes(bed))
    saved = {m.name: m.sh("cat /etc/hosts", check=True).stdout for m in nodes(bed)}
    for machine in nodes(bed):
        machine.sh("cat >> /etc/hosts", input=lines, check=True)
    try:
        yield names
    finally:
        for machine in nodes(bed):
            machine.sh("cat > /etc/hosts", input=saved[machine.name], check=True)
            assert machine.sh("cat /etc/hosts").stdout == saved[machine.name]


def write_spec(bed: Testbed, path: Path, lb: Machine, names: dict[str, str] | None = None) -> Path:
    doc: dict[str, Any] = bed.spec(nodes(bed))
    for node in doc["nodes"]:
        node["address"] = (names or {}).get(node["name"], node["address"])
    doc["ssh"].update({"connect_timeout": "5s", "command_timeout": "30s"})
    doc["load_balancer"] = {
        "layer": 4,
        "engine": "haproxy",
        "address": lb.address,
        "hosts": [{"name": lb.name, "address": lb.address}],
        # HAProxy wants ~2 x maxconn open files. Inside a test machine the hard limit is the
        # test runner's (20000 here) and the container may not raise it (no
        # CAP_SYS_RESOURCE), so the default 10000 cannot start; a Debian host allows 524288.
        "max_connections": 4000,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def rke2ha(bed: Testbed, *args: str, timeout: float = 180.0) -> tuple[int, str]:
    done = bed.workstation.rke2ha(*args, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def curl(bed: Testbed, url: str) -> str:
    done = bed.workstation.run(["curl", "-sS", "--max-time", "5", url], timeout=15)
    return done.stdout + done.stderr


def test_up_runs_haproxy_as_the_hosts_service_and_down_leaves_it_as_it_was(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb-1") as lb:
        before = snapshot(lb)
        # The root filesystem has haproxy installed but disabled (tests/support/machines).
        assert before["package"] == "install ok installed"
        assert (before["enabled"], before["active"]) == ("disabled", "inactive")
        spec = write_spec(testbed, tmp_path / "spec.yaml", lb)

        code, out = rke2ha(testbed, "plan", "-f", str(spec))
        assert code == 0, out
        assert f"load_balancer.hosts.{lb.name}" in out
        assert "upload the config" in out and "check it with the host's" in out
        assert "install package" not in out  # it is there already

        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        after = snapshot(lb)
        assert (after["enabled"], after["active"]) == ("enabled", "active")
        assert after["config"] != before["config"]
        assert after["extra"] == "haproxy.cfg.rke2ha-orig"  # the host's own config, kept
        assert "Generated by rke2ha" in lb.sh(f"cat {CONFIG}").stdout

        # A second `up` changes nothing; `plan --detailed-exitcode` agrees.
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0 and "No changes" in out, out
        code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
        assert code == 0, out
        pid = lb.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip()
        assert pid not in ("", "0")

        # A config HAProxy rejects: checked on the host, never moved over the running one.
        done = testbed.workstation.run(
            [sys.executable, "-c", REJECTED, str(spec)], timeout=60, cwd=str(tmp_path)
        )
        assert done.returncode == 3, done.stdout + done.stderr
        assert "rejects the rendered config" in done.stdout and lb.name in done.stdout
        assert "no-such-keyword" in done.stdout  # HAProxy's own words
        assert "DONE: upload\n" in done.stdout
        untouched = snapshot(lb)
        assert untouched == after  # same config, no staged file left, enabled and active
        assert lb.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip() == pid

        # Node names the nodes resolve but the load balancer host does not: the pre-flight
        # that `up` runs first probes from the host, finds it, and nothing is touched.
        with names_on_nodes(testbed) as names:
            named = write_spec(testbed, tmp_path / "named.yaml", lb, names)
            code, out = rke2ha(testbed, "up", "-f", str(named), "--yes")
        assert code == 1, out
        assert f"load balancer host {lb.name} cannot resolve node-1's address" in out, out
        assert "node-1.lbtest" in out and "nothing was changed" in out, out
        assert snapshot(lb) == after
        assert lb.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip() == pid
        code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
        assert code == 0, out  # the state still names the config that runs

        # Someone stops the service: `plan` sees it, `up` starts it again.
        lb.sh(f"systemctl stop {UNIT}", check=True)
        code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
        assert code == 2, out
        assert "enabled, inactive -> enabled, active" in out and "start haproxy" in out, out
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0 and snapshot(lb) == after, out

        # A reboot of the load balancer machine brings the service back on its own.
        lb.stop()
        started = time.monotonic()
        lb.start()
        # The harness restarts units that failed at boot; haproxy must not have been one.
        assert not any("haproxy" in note for note in lb.boot_notes), lb.boot_notes
        assert wait_active(lb) == "active"
        TIMINGS.append(
            f"{lb.name}: haproxy.service active {time.monotonic() - started:.1f}s after the "
            "machine was started again (reboot)"
        )
        code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
        assert code == 0, out

        # HAProxy checks the nodes from its host: 80/443 find the web servers, 6443 nothing;
        # a request through the load balancer's address reaches a node.
        with web_on_nodes(testbed):
            assert wait_up(lb, "rke2ha_443", 3) == list(NODES)
            assert wait_up(lb, "rke2ha_80", 3) == list(NODES)
            apiserver = {s: st for (b, s), st in stats(lb).items() if b == "rke2ha_6443"}
            assert sorted(apiserver) == list(NODES)
            assert all(st.startswith("DOWN") for st in apiserver.values()), apiserver
            assert curl(testbed, f"http://{lb.address}/") in NODES
            # `lb drain`: through HAProxy's runtime API on the host, over SSH, no reload.
            drained = NODES[1]
            running = lb.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip()
            code, out = rke2ha(testbed, "lb", "drain", drained, "-f", str(spec))
            assert code == 0 and f"on {lb.name}" in out, out
            assert {s: st for (b, s), st in stats(lb).items() if b == "rke2ha_80"}[drained] == (
                "DRAIN"
            )
            answers = [curl(testbed, f"http://{lb.address}/") for _ in range(12)]
            assert drained not in answers and set(answers) <= set(NODES), answers
            code, out = rke2ha(testbed, "lb", "enable", drained, "-f", str(spec))
            assert code == 0, out
            assert wait_up(lb, "rke2ha_80", 3) == list(NODES)
            answers = [curl(testbed, f"http://{lb.address}/") for _ in range(12)]
            assert drained in answers, answers
            assert lb.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip() == running

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        assert snapshot(lb) == before
        # Nothing listens on the load balancer's address any more.
        assert "Failed to connect" in curl(testbed, f"http://{lb.address}/")


def local_mirror(machine: Machine, directory: Path) -> None:
    """A package source on the machine itself (`file:`) holding the haproxy .deb that built
    the root filesystem, the way an operator would give an offline host a mirror."""
    debs = sorted((rootfs_mod.cache_dir() / "debs").glob("haproxy_*.deb"))
    assert debs, "the root filesystem's package cache has no haproxy .deb"
    directory.mkdir()
    shutil.copy(debs[-1], directory)
    scan = ["dpkg-scanpackages", ".", "/dev/null"]
    done = subprocess.run(scan, cwd=directory, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    index = done.stdout
    machine.sh("mkdir -p /srv/rke2ha-mirror", check=True)
    machine.sh("cat > /srv/rke2ha-mirror/Packages", input=index, check=True)
    encoded = base64.b64encode(debs[-1].read_bytes()).decode()
    machine.sh(f"base64 -d > /srv/rke2ha-mirror/{debs[-1].name}", input=encoded, check=True)
    machine.sh(
        "echo 'deb [trusted=yes] file:/srv/rke2ha-mirror ./' "
        "> /etc/apt/sources.list.d/rke2ha-mirror.list",
        check=True,
    )


def test_a_missing_package_is_installed_and_purged_and_no_source_is_a_clear_error(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb-bare") as lb:
        # This machine's own overlay: without haproxy, and (like every test machine) with no
        # package source it can reach.
        lb.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q haproxy", check=True)
        before = snapshot(lb)
        assert before["package"] != "install ok installed"
        assert before["enabled"] in ("", "not-found") and before["config"] == ""
        spec = write_spec(testbed, tmp_path / "spec.yaml", lb)
        code, out = rke2ha(testbed, "plan", "-f", str(spec))
        assert code == 0 and "install package haproxy" in out, out
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes", timeout=300)
        assert code == 1, out
        assert "cannot install package haproxy" in out and lb.name in out, out
        assert "fix: give lb-bare a package source" in out
        assert snapshot(lb) == before
        # Nothing was changed, so nothing is recorded and `down` has nothing to do.
        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0 and "Nothing to destroy" in out, out

        # Given a package source, `up` installs it (reading the package lists first), and
        # `down` purges what rke2ha installed: the machine is as it was before.
        local_mirror(lb, tmp_path / "mirror")
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes", timeout=300)
        assert code == 0, out
        assert "lb-bare: install package haproxy" in out
        installed = snapshot(lb)
        assert installed["package"] == "install ok installed"
        assert (installed["enabled"], installed["active"]) == ("enabled", "active")
        assert installed["extra"] == ""  # no original to keep: the package's own is gone too
        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes", timeout=300)
        assert code == 0 and "purge package haproxy" in out, out
        assert snapshot(lb) == before


# --- Two hosts sharing load_balancer.address as a keepalived virtual IP --------------------

# Far above the machines' own addresses (198.18.0.11 + index, tests/support/machines/network.py)
# and every other address the tests use, inside the bridge's on-link /16.
VIP = "198.18.200.10"
VRRP_UNIT = "keepalived.service"
VRRP_CONFIG = "/etc/keepalived/keepalived.conf"
TRACK = "/etc/keepalived/rke2ha-track.py"
VRRP_PASSWORD = "Vr9pQx2m-not-shown"


def pair_snapshot(machine: Machine) -> dict[str, str]:
    """`snapshot` plus keepalived's package, config, track script, unit and addresses."""
    script = (
        "echo kpackage=$(dpkg-query -W -f='${Status}' keepalived 2>/dev/null); "
        f"echo kconfig=$(sha256sum {VRRP_CONFIG} 2>/dev/null | cut -d' ' -f1); "
        f"echo ktrack=$(ls {TRACK} 2>/dev/null); "
        f"echo kenabled=$(systemctl is-enabled {VRRP_UNIT} 2>/dev/null); "
        f"echo kactive=$(systemctl is-active {VRRP_UNIT} 2>/dev/null); "
        "echo addrs=$(ip -4 -o addr show | awk '{print $2\"/\"$4}' | sort | tr '\\n' ' ')"
    )
    out = machine.sh(script).stdout
    return {
        **snapshot(machine),
        **dict(line.split("=", 1) for line in out.splitlines() if "=" in line),
    }


def holders(machines: list[Machine]) -> list[str]:
    """Names of the machines that have the virtual IP on an interface (`ip -4 addr`)."""
    return [m.name for m in machines if f" {VIP}/" in m.sh("ip -4 -o addr show").stdout]


def wait_holders(machines: list[Machine], want: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    held = holders(machines)
    while len(held) != want and time.monotonic() < deadline:
        time.sleep(0.2)
        held = holders(machines)
    return held


def write_pair_spec(
    bed: Testbed, path: Path, hosts: list[Machine], password: str, engine: str = "haproxy"
) -> Path:
    """The spec of a keepalived pair on `hosts`, with `password` in a 0600 VRRP auth file
    beside it."""
    secret = path.parent / "vrrp.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    doc: dict[str, Any] = bed.spec(nodes(bed))
    doc["ssh"].update({"connect_timeout": "5s", "command_timeout": "30s"})
    doc["load_balancer"] = {
        "layer": 4,
        "engine": engine,
        "address": VIP,
        "hosts": [{"name": m.name, "address": m.address} for m in hosts],
        "vrrp": {"auth_file": str(secret), "interface": "eth0", "virtual_router_id": 42},
        "max_connections": 4000,  # see write_spec
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_two_hosts_share_a_virtual_ip_that_moves_when_haproxy_stops(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb-a") as lb_a, testbed.extra_machine("lb-b") as lb_b:
        pair = [lb_a, lb_b]
        before = {m.name: pair_snapshot(m) for m in pair}
        for snap in before.values():  # the root filesystem: both installed, both disabled
            assert snap["kpackage"] == "install ok installed", snap
            assert (snap["kenabled"], snap["kactive"]) == ("disabled", "inactive"), snap
        spec = write_pair_spec(testbed, tmp_path / "spec.yaml", pair, VRRP_PASSWORD)

        code, out = rke2ha(testbed, "plan", "-f", str(spec))
        assert code == 0, out
        for m in pair:
            assert f"load_balancer.hosts.{m.name}/keepalived" in out, out
        assert f"install {TRACK}" in out, out
        assert VRRP_PASSWORD[:8] not in out

        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        assert VRRP_PASSWORD[:8] not in out
        # Host a fully (haproxy, then keepalived) before host b is touched.
        order = [
            out.index(f"{m.name}: start {unit}") for m in pair for unit in ("haproxy", "keepalived")
        ]
        # Debian bookworm's keepalived 2.2.7 has --config-test: the file was checked.
        assert f"{lb_a.name}: check it with the host's /usr/sbin/keepalived" in out, out
        assert "config not checked" not in out, out
        assert order == sorted(order), out
        for m in pair:
            snap = pair_snapshot(m)
            assert (snap["enabled"], snap["active"]) == ("enabled", "active"), snap
            assert (snap["kenabled"], snap["kactive"]) == ("enabled", "active"), snap
            assert m.sh(f"stat -c %a {VRRP_CONFIG}").stdout.strip() == "600"
            # No node answers yet (the pre-flight wants their ports free): the track script
            # fails on both, so neither holds the address.
        assert wait_holders(pair, 0, 5) == []

        code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
        assert code == 0, out

        with web_on_nodes(testbed):
            held = wait_holders(pair, 1, 30)
            assert len(held) == 1, held
            holder = next(m for m in pair if m.name == held[0])
            other = next(m for m in pair if m is not holder)
            assert wait_up(other, "rke2ha_443", 3) == list(NODES)  # the standby could serve
            assert curl(testbed, f"http://{VIP}/") in NODES

            # The holder's HAProxy stops: the address moves to the other host.
            holder.sh(f"systemctl stop {UNIT}", check=True)
            stopped = time.monotonic()
            moved = wait_holders_exactly(pair, [other.name], 15)
            seconds = time.monotonic() - stopped
            assert moved == [other.name], moved
            TIMINGS.append(
                f"keepalived pair: the virtual IP moved {holder.name} -> {other.name} "
                f"{seconds:.2f}s after haproxy stopped on {holder.name}"
            )
            assert seconds < 3.0, f"the virtual IP took {seconds:.2f}s to move"
            assert curl(testbed, f"http://{VIP}/") in NODES

            # It does not come back while the old holder's HAProxy is still stopped.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert holders(pair) == [other.name]
                time.sleep(0.25)
            # Nor once it runs again: nopreempt keeps it where it serves.
            holder.sh(f"systemctl start {UNIT}", check=True)
            assert wait_up(holder, "rke2ha_443", 3) == list(NODES)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                assert holders(pair) == [other.name]
                time.sleep(0.25)

            # `lb drain` reaches the runtime API of both hosts, the standby's included.
            drained = NODES[1]
            code, out = rke2ha(testbed, "lb", "drain", drained, "-f", str(spec))
            assert code == 0 and all(f"on {m.name}" in out for m in pair), out
            for m in pair:
                served = {s: st for (b, s), st in stats(m).items() if b == "rke2ha_80"}
                assert served[drained] == "DRAIN", (m.name, served)
            code, out = rke2ha(testbed, "lb", "enable", drained, "-f", str(spec))
            assert code == 0, out
            for m in pair:
                assert wait_up(m, "rke2ha_80", 3) == list(NODES)

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            # The address leaves a host before the engine behind it stops.
            assert out.index(f"{m.name}: stop keepalived") < out.index(f"{m.name}: stop haproxy")
            assert pair_snapshot(m) == before[m.name]


def wait_holders_exactly(machines: list[Machine], want: list[str], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    held = holders(machines)
    while held != want and time.monotonic() < deadline:
        time.sleep(0.05)
        held = holders(machines)
    return held
