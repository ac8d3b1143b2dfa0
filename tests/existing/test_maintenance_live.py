"""`rke2ha lb drain NODE` / `lb enable NODE` against the real engines `up` runs: HAProxy
through its runtime API (stats socket), the built-in load balancer through its admin
endpoint. Traffic is real curl through the load balancer to the three node emulators; the
node that answered is the emulator's X-Rke2ha-Node header. No reload happens (same pid)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.existing.conftest import (
    Cli,
    Deployment,
    Emulators,
    cli,
    existing_spec,
    https_get,
    keepalive_request,
    lab_nodes,
    torn_down,
)

from rke2ha.maintenance import parse_servers_state, remote_socket_command, stats_socket
from rke2ha.maintenance_run import send

REQUESTS = 30
# Its own range (the rest of tests/existing uses 127.0.80.0/24), so it can run beside them.
SUBNET = "127.0.218.0/24"
LB = "127.0.218.10"
NODES = ["127.0.218.11", "127.0.218.12", "127.0.218.13"]
ADMIN = f"{LB}:8404"


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    if os.geteuid() != 0:
        pytest.skip("the emulators and engines bind ports 80/443: needs root")
    directory = tmp_path_factory.mktemp("maintenance-nodes")
    with lab_nodes(directory, NODES, SUBNET) as procs:
        state = directory / ".rke2ha"
        yield Emulators(
            state / "lab" / "pki" / "ca.crt", state / "secrets" / "onprem-health-token", procs
        )


@pytest.fixture
def deployment(tmp_path: Path, emulators: Emulators) -> Iterator[Deployment]:
    with torn_down(tmp_path) as deployed:
        yield deployed


def lb(deployment: Deployment, action: str, node: str) -> Cli:
    return cli("lb", action, node, "-f", str(deployment.spec_file))


def spec(engine: str, emulators: Emulators) -> dict[str, Any]:
    document = existing_spec(engine, load_balancer={"health": {"token_file": str(emulators.token)}})
    document["nodes"] = [{"name": f"node-{i + 1}", "address": a} for i, a in enumerate(NODES)]
    document["load_balancer"].update(address=LB, admin=ADMIN)
    return document


def served(emulators: Emulators, count: int = REQUESTS) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, node, _ = https_get(emulators.ca, LB)
        assert status == 200
        seen[node] += 1
    return seen


def pinned_to(node: str) -> socket.socket:
    """A keep-alive connection through the LB's port 80 that landed on `node`."""
    for _ in range(30):
        sock = socket.create_connection((LB, 80), timeout=5)
        if f"x-rke2ha-node: {node}".encode() in keepalive_request(sock).lower():
            return sock
        sock.close()
    raise AssertionError(f"no connection reached {node} in 30 tries")


def builtin_backends(node: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://{ADMIN}/status", timeout=5) as response:
        status = json.loads(response.read())
    return [b for fe in status["frontends"] for b in fe["backends"] if b["name"] == node]


def up_and_drain(
    deployment: Deployment, emulators: Emulators, document: dict[str, Any]
) -> tuple[int, socket.socket, Cli]:
    """`up`, every node serving, a connection held on node-2, `lb drain node-2`: no new
    connection reaches node-2 and the held one still works. The engine's pid, the held
    connection and the drain's output."""
    deployment.write(document)
    up = deployment.cli("up", "--yes")
    assert up.code == 0, up.err
    pid = deployment.engine_pid()
    assert set(served(emulators)) == {"node-1", "node-2", "node-3"}
    open_conn = pinned_to("node-2")

    drain = lb(deployment, "drain", "node-2")
    assert drain.code == 0, drain.err
    print(drain.out)
    assert drain.out.startswith("node-2: drain"), drain.out
    after = served(emulators)
    assert "node-2" not in after and sum(after.values()) == REQUESTS, after
    # the connection open before the drain still works, on node-2
    assert b"x-rke2ha-node: node-2" in keepalive_request(open_conn).lower()
    return pid, open_conn, drain


@pytest.mark.parametrize("engine", ["haproxy", "builtin"])
def test_drain_stops_new_connections_and_enable_brings_them_back(
    engine: str, deployment: Deployment, emulators: Emulators
) -> None:
    pid, open_conn, _ = up_and_drain(deployment, emulators, spec(engine, emulators))
    open_conn.close()

    if engine == "haproxy":
        config = deployment.directory / ".rke2ha/existing/haproxy/current/haproxy/haproxy.cfg"
        path = stats_socket(config.read_text())
        assert path is not None
        rows = [
            r for r in parse_servers_state(send(path, "show servers state")) if r.server == "node-2"
        ]
        assert len(rows) == 4 and all(r.drained for r in rows), rows
        # health checks keep running and pass, yet node-2 stays out: operational is running
        assert all(r.operational == 2 for r in rows)
    else:
        backends = builtin_backends("node-2")
        assert len(backends) == 4
        assert all(b["state"] == "drain" and b["maintenance_since"] for b in backends), backends
        assert all(not b["serves"] for b in backends)

    enable = lb(deployment, "enable", "node-2")
    assert enable.code == 0, enable.err
    print(enable.out)
    again = served(emulators)
    assert again["node-2"] > 0, again
    if engine == "haproxy":
        rows = [
            r for r in parse_servers_state(send(path, "show servers state")) if r.server == "node-2"
        ]
        assert rows and not any(r.drained for r in rows), rows
        # the command the LB hosts run over SSH (python3 on the socket), here against the
        # same real HAProxy: drain again, then ready
        command = remote_socket_command(path, ["set server rke2ha_443/node-2 state drain"])
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "node-2" not in served(emulators)
        bad = remote_socket_command(path, ["set server rke2ha_443/node-9 state ready"])
        done = subprocess.run(["sh", "-c", bad], capture_output=True, text=True, timeout=30)
        # HAProxy's answer to an unknown server is printed; the exit status says it failed
        assert done.returncode == 1 and len(done.stdout.splitlines()) > 1, done.stdout
    else:
        assert all(b["state"] == "up" and b["serves"] for b in builtin_backends("node-2"))
    assert deployment.engine_pid() == pid  # no reload, no restart
    unknown = lb(deployment, "drain", "node-9")
    assert unknown.code == 2 and "node-1, node-2, node-3" in unknown.err
    assert deployment.cli("down", "--yes").code == 0
    gone = lb(deployment, "drain", "node-2")
    assert gone.code == 1 and "not running" in gone.err, gone.err


def servers_state(deployment: Deployment) -> list[Any]:
    config = deployment.directory / ".rke2ha/existing/haproxy/current/haproxy/haproxy.cfg"
    path = stats_socket(config.read_text())
    assert path is not None
    rows = parse_servers_state(send(path, "show servers state"))
    return [r for r in rows if r.server == "node-2"]


@pytest.mark.parametrize("engine", ["haproxy", "nginx"])
def test_a_drained_node_stays_out_across_the_reloads_up_does(
    engine: str, deployment: Deployment, emulators: Emulators
) -> None:
    """drain, then a spec change that makes `up` reload the engine: node-2 gets no new
    connection; `plan` after it is clean (the state's drain is in the desired config);
    `lb enable` brings node-2 back. nginx drains by a reload (same master), HAProxy keeps
    its runtime drain because `up` drains again on the new worker."""
    document = spec(engine, emulators)
    if engine == "nginx":  # open-source nginx has no health token to send
        document["load_balancer"].pop("health")
    master, open_conn, drain = up_and_drain(deployment, emulators, document)
    assert deployment.state()["drained"] == ["node-2"]
    config = deployment.directory / f".rke2ha/existing/{engine}/current/{engine}/{engine}.cfg"
    if engine == "nginx":
        config = config.with_name("nginx.conf")
        assert "node-2: nginx config checked and reloaded" not in drain.out
        assert "(nginx config checked and reloaded, this machine" in drain.out, drain.out
        assert config.read_text().count(f"{NODES[1]}:") == config.read_text().count(" down;")
        again = lb(deployment, "drain", "node-2")  # nothing to change: no second reload
        assert again.code == 0 and "already so, no reload" in again.out, again.out
    else:
        # A reload rke2ha does not do (SIGUSR2 to the master, what `systemctl reload`
        # sends) forgets the runtime drain: the reason `up` drains again after its own.
        os.kill(master, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while any(r.drained for r in servers_state(deployment)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(r.drained for r in servers_state(deployment))
        assert lb(deployment, "drain", "node-2").code == 0
        assert all(r.drained for r in servers_state(deployment))

    # A spec change: `up` renders and reloads the engine (same master: a reload).
    document["load_balancer"]["balance"] = "roundrobin"
    deployment.write(document)
    up = deployment.cli("up", "--yes")
    assert up.code == 0, up.err
    print(up.out)
    assert deployment.engine_pid() == master
    for _ in range(3):  # each round new connections, spread over the new workers
        after = served(emulators)
        assert "node-2" not in after and sum(after.values()) == REQUESTS, after
    if engine == "haproxy":
        assert "node-2: drained again on HAProxy worker" in up.out, up.out
        rows = servers_state(deployment)
        assert len(rows) == 4 and all(r.drained for r in rows), rows
    else:
        assert " down;" in config.read_text()
    plan = deployment.cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err

    enable = lb(deployment, "enable", "node-2")
    assert enable.code == 0, enable.err
    print(enable.out)
    assert "drained" not in deployment.state()
    deadline = time.monotonic() + 15
    seen: Counter[str] = Counter()
    while seen["node-2"] == 0 and time.monotonic() < deadline:
        seen = served(emulators, 10)
    assert seen["node-2"] > 0, seen
    assert deployment.engine_pid() == master
    open_conn.close()
