"""The rendered HAProxy and nginx configs, run for real in front of node stand-ins.

`haproxy -c` proves a config parses; these tests prove it *behaves*: the health checks
send what RKE2 needs (Host header, bearer token from the environment, TLS), count 401 as
"up, readiness unknown" only when they should, keep a node whose 9345 listens before it
has joined out of the 9345 pool, and the layer-7 hop passes Host, X-Forwarded-* and
websockets. Everything runs on 127.0.22.0/24 on the real ports, so root is needed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.render.helpers import SpecFactory, make_cert, render
from tests.render.livenodes import LiveNodes, NodeState
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.root

HOSTNAME = "rancher.example.com"
LB = "127.0.22.10"
NODES = ["127.0.22.11", "127.0.22.12", "127.0.22.13"]
ADMIN = f"{LB}:18404"
TOKEN = "live-health-token-0123456789abcdef"
CONVERGE_SECONDS = 15


@pytest.fixture(autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("binds ports 80/443/6443/9345 on 127.0.22.x: needs root")


def live_spec(specs: SpecFactory, extra: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodes": [{"name": f"node-{i + 1}", "address": a} for i, a in enumerate(NODES)],
        "load_balancer": {
            "address": LB,
            "admin": ADMIN,
            "health": {"interval": "200ms", "timeout": "500ms", "rise": 1, "fall": 1},
            # this machine caps open files at 20000; 10000 connections need ~20044
            "max_connections": 1000,
        },
        "dns": {"rfc2136": {"server": "127.0.22.53"}},
    }
    for key, value in extra.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def start_nodes(tmp_path: Path, states: list[NodeState]) -> LiveNodes:
    cert, key = make_cert(tmp_path / "node-tls", "node.cluster.local")
    nodes = LiveNodes(states, cert, key)
    nodes.start()
    return nodes


def states(**overrides: dict[str, Any]) -> list[NodeState]:
    out = []
    for index, address in enumerate(NODES):
        name = f"node-{index + 1}"
        out.append(NodeState(name, address, HOSTNAME, token=TOKEN, **overrides.get(name, {})))
    return out


class Process:
    """A load balancer process started by a test, always stopped."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            argv,
            env=dict(os.environ, **(env or {})),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text()[-3000:]


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def haproxy_status() -> dict[tuple[str, str], str]:
    """(backend, server) -> UP/DOWN from the rendered stats page (loopback only)."""
    with urllib.request.urlopen(f"http://{ADMIN}/;csv", timeout=2) as response:
        text = response.read().decode()
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    return {
        (row["pxname"], row["svname"]): row["status"].split()[0]
        for row in rows
        if row["svname"] not in ("FRONTEND", "BACKEND")
    }


def wait_for_status(expected: dict[tuple[str, str], str], process: Process) -> None:
    deadline = time.monotonic() + CONVERGE_SECONDS
    seen: dict[tuple[str, str], str] = {}
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            pytest.fail(f"haproxy exited: {process.output()}")
        try:
            seen = haproxy_status()
        except OSError:
            seen = {}
        if seen and all(seen.get(key) == value for key, value in expected.items()):
            return
        time.sleep(0.2)
    pytest.fail(f"health never matched: expected {expected}, saw {seen}\n{process.output()}")


def node_behind(port: int, path: str) -> str:
    """Which node answers an HTTPS request sent through the layer-4 load balancer."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((LB, port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    for line in data.decode().split("\r\n"):
        if line.lower().startswith("x-node:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no X-Node in {data!r}")


def start_haproxy(spec_out: Path, tmp_path: Path, env: dict[str, str] | None) -> Process:
    cfg = spec_out / "haproxy/haproxy.cfg"
    return Process(["haproxy", "-db", "-f", str(cfg)], env, tmp_path / "haproxy.log")


def test_haproxy_layer4_with_token(
    specs: SpecFactory, tmp_path: Path, processes: list[Process]
) -> None:
    token_file = specs.health_token(TOKEN)
    spec = specs.load(
        live_spec(
            specs,
            {
                "rke2": {"anonymous_health": False},
                "load_balancer": {
                    "address": LB,
                    "admin": ADMIN,
                    "health": {
                        "interval": "200ms",
                        "timeout": "500ms",
                        "rise": 1,
                        "fall": 1,
                        "token_file": token_file,
                    },
                },
            },
        )
    )
    out = tmp_path / "out"
    render(spec, out, bind_host=LB)
    # node-2: apiserver up but not ready; node-3: 9345 listens, not joined (no 6443)
    nodes = start_nodes(
        tmp_path, states(**{"node-2": {"ready": False}, "node-3": {"joined": False}})
    )
    try:
        haproxy = start_haproxy(out, tmp_path, {"RKE2HA_HEALTH_TOKEN": TOKEN})
        processes.append(haproxy)
        expected = {}
        for port in (80, 443):  # ingress healthy everywhere (Host header sent)
            expected.update({(f"rke2ha_{port}", f"node-{i}"): "UP" for i in (1, 2, 3)})
        for port in (6443, 9345):  # only 200 with the token counts
            expected[(f"rke2ha_{port}", "node-1")] = "UP"
            expected[(f"rke2ha_{port}", "node-2")] = "DOWN"
            expected[(f"rke2ha_{port}", "node-3")] = "DOWN"
        wait_for_status(expected, haproxy)
        # joins and API calls reach only the ready, joined node
        assert {node_behind(9345, "/ping") for _ in range(6)} == {"node-1"}
        assert {node_behind(6443, "/readyz") for _ in range(6)} == {"node-1"}
        # TLS passthrough on 443 reaches every node with a healthy ingress
        assert {node_behind(443, "/") for _ in range(12)} == {"node-1", "node-2", "node-3"}
    finally:
        nodes.stop()


def test_haproxy_layer4_anonymous_401_counts_as_up(
    specs: SpecFactory, tmp_path: Path, processes: list[Process]
) -> None:
    spec = specs.load(live_spec(specs, {"rke2": {"anonymous_health": False}}))
    out = tmp_path / "out"
    render(spec, out, bind_host=LB)
    # node-1 healthy; node-2's supervisor answers without pong; node-3 not joined
    nodes = start_nodes(
        tmp_path, states(**{"node-2": {"pong": "starting"}, "node-3": {"joined": False}})
    )
    try:
        haproxy = start_haproxy(out, tmp_path, None)
        processes.append(haproxy)
        wait_for_status(
            {
                ("rke2ha_6443", "node-1"): "UP",  # 401: up, readiness unknown
                ("rke2ha_6443", "node-2"): "UP",
                ("rke2ha_6443", "node-3"): "DOWN",
                ("rke2ha_9345", "node-1"): "UP",
                ("rke2ha_9345", "node-2"): "DOWN",  # /ping without pong
                ("rke2ha_9345", "node-3"): "DOWN",  # listening but not joined
            },
            haproxy,
        )
    finally:
        nodes.stop()


def https_get(path: str, cafile: Path) -> tuple[int, dict[str, str], str]:
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection((LB, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def http_redirect(path: str) -> tuple[int, str]:
    with socket.create_connection((LB, 80), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head = data.decode().split("\r\n\r\n")[0].split("\r\n")
    location = next(
        line.split(":", 1)[1].strip() for line in head if line.lower().startswith("location:")
    )
    return int(head[0].split()[1]), location


def check_layer7(cafile: Path) -> None:
    status, _headers, body = https_get("/echo", cafile)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["host"] == HOSTNAME
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == "443"
    assert seen["x-forwarded-for"].startswith("127.")
    assert http_redirect("/dashboard/?x=1") == (308, f"https://{HOSTNAME}/dashboard/?x=1")
    context = ssl.create_default_context(cafile=str(cafile))
    sock = socket.create_connection((LB, 443), timeout=5)
    with ws_connect(
        f"wss://{HOSTNAME}/ws", sock=sock, ssl=context, server_hostname=HOSTNAME, open_timeout=5
    ) as ws:
        assert ws.recv(timeout=5) in ("node-1", "node-2", "node-3")


def layer7_spec(specs: SpecFactory) -> dict[str, Any]:
    cert, key = make_cert(specs.root / "tls", HOSTNAME)
    extra = {
        "rke2": {"anonymous_health": False},
        "load_balancer": {
            "layer": 7,
            "address": LB,
            "admin": ADMIN,
            "tls": {"cert": str(cert), "key": str(key)},
            "health": {"interval": "200ms", "timeout": "500ms", "rise": 1, "fall": 1},
        },
    }
    return live_spec(specs, extra)


def test_haproxy_layer7_headers_redirect_websocket(
    specs: SpecFactory, tmp_path: Path, processes: list[Process]
) -> None:
    spec = specs.load(layer7_spec(specs))
    out = tmp_path / "out"
    render(spec, out, bind_host=LB)
    nodes = start_nodes(tmp_path, states())
    try:
        haproxy = start_haproxy(out, tmp_path, None)
        processes.append(haproxy)
        wait_for_status({("rke2ha_ingress", f"node-{i}"): "UP" for i in (1, 2, 3)}, haproxy)
        check_layer7(specs.root / "tls" / f"{HOSTNAME}.crt")
    finally:
        nodes.stop()


def test_nginx_layer7_headers_redirect_websocket(
    specs: SpecFactory, tmp_path: Path, processes: list[Process]
) -> None:
    spec = specs.load(layer7_spec(specs))
    out = tmp_path / "out"
    render(spec, out, bind_host=LB)
    nodes = start_nodes(tmp_path, states())
    try:
        conf = out / "nginx/nginx.conf"
        nginx = Process(
            [
                "nginx",
                "-c",
                str(conf),
                "-e",
                str(tmp_path / "nginx-error.log"),
                "-g",
                f"daemon off; pid {tmp_path}/nginx.pid;",
            ],
            None,
            tmp_path / "nginx.log",
        )
        processes.append(nginx)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((LB, 443), timeout=1).close()
                break
            except OSError:
                if nginx.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {nginx.output()}")
                time.sleep(0.1)
        check_layer7(specs.root / "tls" / f"{HOSTNAME}.crt")
    finally:
        nodes.stop()
