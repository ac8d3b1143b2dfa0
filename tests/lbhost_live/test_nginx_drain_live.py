"""`rke2ha lb drain|enable NODE` with nginx on a load balancer host (the test machines):
the host's config is rendered again with the node's `server` lines marked `down`, checked
by the host's nginx and reloaded (the master stays); no new client connection reaches the
node, a connection opened before keeps working, a later `up` that reloads nginx keeps the
node out, and `lb enable` brings it back. The node that answered is the `X-Node` header
of the nodes' bootstrap servers (`tests.support.lbnodes`): client traffic only, nginx's
passive checks send none. The bootstrap servers run only between `up`s, whose pre-flight
wants the nodes' ports free.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from tests.lbhost_live.test_lbhost_live import rke2ha, write_spec
from tests.lbhost_live.test_nginx_host_live import CONFIG, UNIT, main_pid, nginx_spec
from tests.support.lbnodes import NODES, bootstrap_servers, listing, through
from tests.support.machines import Machine, Testbed

from rke2ha.maintenance import parse_servers_state, remote_socket_command
from rke2ha.render.common import DEFAULT_LAYOUT

pytestmark = pytest.mark.root

REQUESTS = 24
# In the workstation: a keep-alive TLS connection through the load balancer's 9345 that
# landed on argv[2] (at most 30 tries); prints the node, then after each stdin line asks
# again on the same connection and prints who answered.
HOLD = """\
import socket, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def ask(conn):
    conn.sendall(b"GET /ping HTTP/1.1\\r\\nHost: lb\\r\\n\\r\\n")
    data = b""
    while b"pong" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return "closed"
        data += chunk
    head = data.decode().lower()
    return head.split("x-node:")[1].split()[0]
for _ in range(30):
    conn = context.wrap_socket(socket.create_connection((sys.argv[1], 9345), timeout=10))
    if ask(conn) == sys.argv[2]:
        break
    conn.close()
else:
    sys.exit("no connection reached " + sys.argv[2])
print(sys.argv[2], flush=True)
for line in sys.stdin:
    print(ask(conn), flush=True)
"""


def spread(bed: Testbed, address: str, count: int = REQUESTS) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        answer, node = through(bed, address, 9345, "/ping")
        assert answer == "200 pong", answer
        seen[node] += 1
    return seen


def test_nginx_drain_on_a_host_survives_up_and_enable_brings_the_node_back(
    testbed: Testbed, tmp_path: Path
) -> None:
    drained = NODES[1]
    with testbed.extra_machine("lb-dr") as lb:
        before = listing(lb)
        spec = nginx_spec(testbed, tmp_path / "spec.yaml", lb)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        master = main_pid(lb)

        with bootstrap_servers(testbed, tmp_path, keep_alive=True):
            seen: Counter[str] = Counter()
            deadline = time.monotonic() + 30
            while len(seen) < len(NODES) and time.monotonic() < deadline:
                seen += spread(testbed, lb.address, 6)
            assert set(seen) == set(NODES), seen
            hold = testbed.workstation.popen(
                [sys.executable, "-c", HOLD, lb.address, drained],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert hold.stdin is not None and hold.stdout is not None
            try:
                assert hold.stdout.readline().strip() == drained

                started = time.monotonic()
                code, out = rke2ha(testbed, "lb", "drain", drained, "-f", str(spec))
                took = time.monotonic() - started
                assert code == 0, out
                print(out)
                assert out.startswith(f"{drained}: drain (no new connections; open ones finish)")
                assert f"nginx config checked and reloaded, {lb.name})" in out, out
                config = lb.sh(f"cat {CONFIG}").stdout
                assert config.count(" down;") == 4, config  # one upstream per port
                assert main_pid(lb) == master  # a reload, not a restart
                after = spread(testbed, lb.address)
                assert drained not in after, after
                # the connection opened before the drain: still answered, by the same node
                hold.stdin.write("again\n")
                hold.stdin.flush()
                assert hold.stdout.readline().strip() == drained
            finally:
                hold.kill()
                hold.wait(10)

        # A spec change: `up` renders from the state (node-2 still down) and reloads.
        changed = nginx_spec(testbed, tmp_path / "changed.yaml", lb, balance="roundrobin")
        code, out = rke2ha(testbed, "up", "-f", str(changed), "--yes")
        assert code == 0, out
        assert f"{lb.name}: reload {UNIT} (until its old workers stop accepting)" in out, out
        config = lb.sh(f"cat {CONFIG}").stdout
        assert "least_conn;" not in config and config.count(" down;") == 4, config
        code, out = rke2ha(testbed, "plan", "-f", str(changed), "--detailed-exitcode")
        assert code == 0, out

        with bootstrap_servers(testbed, tmp_path):
            after = spread(testbed, lb.address)
            assert drained not in after and sum(after.values()) == REQUESTS, after
            code, out = rke2ha(testbed, "lb", "enable", drained, "-f", str(changed))
            assert code == 0, out
            print(out)
            assert " down;" not in lb.sh(f"cat {CONFIG}").stdout
            back = spread(testbed, lb.address)
            assert back[drained] > 0, back
            assert main_pid(lb) == master

        print(f"lb drain with nginx on {lb.name}: {took:.1f}s")
        code, out = rke2ha(testbed, "down", "-f", str(changed), "--yes")
        assert code == 0, out
        assert listing(lb) == before


def host_drained(lb: Machine) -> list[bool]:
    """node-2's forced-drain flag on each backend of the host's HAProxy (runtime API)."""
    said = lb.sh(remote_socket_command(DEFAULT_LAYOUT.haproxy_socket, ["show servers state"]))
    rows = [r for r in parse_servers_state(said.stdout) if r.server == NODES[1]]
    assert len(rows) == 4, said.stdout + said.stderr
    return [r.drained for r in rows]


def test_haproxy_on_a_host_keeps_a_drained_node_drained_across_the_reload_up_does(
    testbed: Testbed, tmp_path: Path
) -> None:
    """HAProxy forgets runtime-API states on a reload: `up`'s reload step drains the
    state's drained nodes again on the new worker; a reload rke2ha does not do loses it."""
    with testbed.extra_machine("lb-dh") as lb:
        spec = write_spec(testbed, tmp_path / "spec.yaml", lb)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        code, out = rke2ha(testbed, "lb", "drain", NODES[1], "-f", str(spec))
        assert code == 0 and f"(HAProxy runtime API on {lb.name})" in out, out
        assert host_drained(lb) == [True] * 4

        doc = yaml.safe_load(spec.read_text())
        doc["load_balancer"]["balance"] = "roundrobin"
        changed = tmp_path / "changed.yaml"
        changed.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, out = rke2ha(testbed, "up", "-f", str(changed), "--yes")
        assert code == 0, out
        print(out)
        assert f"{lb.name}: reload haproxy.service and drain {NODES[1]} again" in out, out
        assert host_drained(lb) == [True] * 4
        code, out = rke2ha(testbed, "plan", "-f", str(changed), "--detailed-exitcode")
        assert code == 0, out

        # A reload by hand (not rke2ha's) starts a worker that never heard of the drain.
        lb.sh("systemctl reload haproxy.service", check=True)
        deadline = time.monotonic() + 15
        while any(host_drained(lb)) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert host_drained(lb) == [False] * 4
        code, out = rke2ha(testbed, "lb", "drain", NODES[1], "-f", str(changed))
        assert code == 0 and host_drained(lb) == [True] * 4, out

        code, out = rke2ha(testbed, "lb", "enable", NODES[1], "-f", str(changed))
        assert code == 0 and host_drained(lb) == [False] * 4, out
        code, out = rke2ha(testbed, "down", "-f", str(changed), "--yes")
        assert code == 0, out
