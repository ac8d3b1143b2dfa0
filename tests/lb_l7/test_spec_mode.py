"""`load_balancer.layer: 7` from a spec: 443 terminates TLS, 80 redirects, 6443/9345 stay
layer 4, and the nodes' ingress health check (from the healthplan) decides who serves."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    LoopThread,
    client_context,
    echo_handler,
    lb_command,
    make_cert,
    read_response,
    start_backend,
)

from rke2ha.errors import UsageError
from rke2ha.lb.l7.server import from_spec, l4_companion
from rke2ha.specfile import load_spec

HOSTNAME = "rancher.lab7.test"
SUBNET = "127.0.50.64/26"  # LB .74, nodes .75-.77 (this area's loopback range)
LB = "127.0.50.74"
NODES = ("127.0.50.75", "127.0.50.76", "127.0.50.77")
ADMIN_PORT = 8404


def write_spec(folder: Path, offset: int, admin_port: int, tls: bool = True) -> Path:
    cert = make_cert(folder / "certs", [HOSTNAME], tag="rancher")
    tls_line = f"  tls: {{cert: {cert.cert}, key: {cert.key}}}\n" if tls else ""
    spec = folder / "rke2ha.yaml"
    spec.write_text(
        f"""name: lab7
hostname: {HOSTNAME}
provider: lab
lab: {{subnet: {SUBNET}, port_offset: {offset}}}
nodes:
  - {{name: node-1}}
  - {{name: node-2}}
  - {{name: node-3}}
load_balancer:
  layer: 7
  ports: [80, 443, 6443, 9345]
  admin: {LB}:{admin_port}
  health: {{interval: 300ms, timeout: 300ms, rise: 1, fall: 1}}
{tls_line}dns: {{zone: lab7.test}}
"""
    )
    return spec


def free_offset() -> int:
    """A port offset N for which 80+N, 443+N, 6443+N, 9345+N and the admin's 8404+N are free
    on the LB address."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((LB, 0))
            offset = probe.getsockname()[1] - 80
        if not 0 < offset <= 60_000 - 9345:
            continue
        ok = True
        for port in (80, 443, 6443, 9345, ADMIN_PORT):
            with socket.socket() as sock:
                try:
                    sock.bind((LB, port + offset))
                except OSError:
                    ok = False
        if ok:
            return offset
    raise RuntimeError("no free port offset")


def test_spec_layer7_config(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, 20000, ADMIN_PORT))
    config = from_spec(spec, port_offset=20000)
    assert config.listen == (LB, 20443)
    assert config.redirect_from == (LB, 20080)
    assert config.backends == tuple((n, 20080) for n in NODES)
    assert config.forwarded_port == 20443 and config.hostname == HOSTNAME
    probe = config.health.probes[0]
    assert (probe.kind, probe.path, probe.port, probe.host_header) == (
        "http",
        "/healthz",
        20080,
        None,  # no Rancher Host: the ingress's catch-all server answers /healthz
    )
    _, companion = l4_companion(spec, port_offset=20000)
    assert companion is not None
    assert sorted(f.port for f in companion.frontends) == [26443, 29345]
    assert companion.admin == (LB, 28404)  # the offset moves the admin port as well


def test_spec_layer7_without_tls_is_a_usage_error(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, 20000, 20404, tls=False))
    with pytest.raises(UsageError, match=r"load_balancer\.tls"):
        from_spec(spec, port_offset=20000)


@pytest.mark.parametrize("workers", [1, 2])
def test_spec_layer7_serves_redirects_and_follows_health(
    tmp_path: Path, loop_thread: LoopThread, workers: int
) -> None:
    offset = free_offset()
    admin_port = ADMIN_PORT + offset  # the offset moves the admin port too
    spec_path = write_spec(tmp_path, offset, ADMIN_PORT)
    nodes = [start_backend(loop_thread, host, echo_handler, 80 + offset) for host in NODES]
    stderr = (tmp_path / "lb.err").open("w")
    proc = subprocess.Popen(
        lb_command(
            "-f",
            str(spec_path),
            "--port-offset",
            str(offset),
            "--access-log",
            "off",
            "--workers",
            str(workers),
        ),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        deadline = time.monotonic() + 15
        while "listening on" not in (tmp_path / "lb.err").read_text():
            assert proc.poll() is None, (tmp_path / "lb.err").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        ca = tmp_path / "certs" / "rancher-ca.crt"
        seen = set()
        for _ in range(6):
            raw = socket.create_connection((LB, 443 + offset), timeout=5)
            with client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                tls.sendall(f"GET /ping HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
                status, _, body = read_response(tls)
            assert status == 200
            reply = json.loads(body)
            headers = {k.lower(): v for k, v in reply["headers"]}
            assert headers["x-forwarded-port"] == str(443 + offset)
            seen.add(reply["backend"])
        assert len(seen) == 3
        raw = socket.create_connection((LB, 443 + offset), timeout=5)
        with client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
            upload = b"u" * 3000
            tls.sendall(
                f"POST /upload HTTP/1.1\r\nHost: {HOSTNAME}\r\n"
                f"Content-Length: {len(upload)}\r\n\r\n".encode()
                + upload
            )
            assert read_response(tls)[0] == 200
        # the ingress check went to every node's port 80 without the Rancher Host (the
        # node's own address), so it reaches the ingress's catch-all server
        checks = [r for n in nodes for r in n.requests if r.get("check")]
        assert checks and all(dict(r["headers"])["Host"] != HOSTNAME for r in checks)
        with socket.create_connection((LB, 80 + offset), timeout=5) as plain:
            plain.sendall(b"GET /dashboard/?x=1 HTTP/1.1\r\nHost: whatever\r\n\r\n")
            status, headers, _ = read_response(plain)
        assert status == 308  # to the port clients reach: 443 moved by the offset
        assert headers["location"] == f"https://{HOSTNAME}:{443 + offset}/dashboard/?x=1"
        # one admin endpoint shows the layer 7 frontends beside the layer 4 ones
        with urllib.request.urlopen(f"http://{LB}:{admin_port}/status", timeout=5) as reply:
            status_doc = json.loads(reply.read())
        fronts = {f["name"]: f for f in status_doc["frontends"]}
        https = fronts[f"https-{443 + offset}"]
        assert len(https["backends"]) == 3
        assert all(b["state"] == "up" for b in https["backends"])
        if workers == 1:  # with 2, the admin worker saw only its share of the clients
            assert https["total"] >= 6 and all(b["total"] >= 1 for b in https["backends"])
            # per-node byte counters count layer 7 responses too (they stayed 0 before)
            assert all(b["bytes_from_backend"] > 0 for b in https["backends"])
            assert sum(b["bytes_to_backend"] for b in https["backends"]) >= 3000  # the POST body
        assert {f"port-{6443}", f"port-{9345}"} <= set(fronts)
        # 6443 and 9345 are relayed at layer 4 by the same process
        for port in (6443, 9345):
            socket.create_connection((LB, port + offset), timeout=5).close()
        # SIGHUP re-reads the spec: node-3 leaves, and gets no more requests
        spec_path.write_text(spec_path.read_text().replace("  - {name: node-3}\n", ""))
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        served = set()
        for _ in range(6):
            raw = socket.create_connection((LB, 443 + offset), timeout=5)
            with client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                tls.sendall(f"GET /after HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
                served.add(json.loads(read_response(tls)[2])["backend"])
        assert served == {f"{NODES[0]}:{80 + offset}", f"{NODES[1]}:{80 + offset}"}
        assert "certificate reloaded" in (tmp_path / "lb.err").read_text()
    finally:
        proc.terminate()
        proc.wait(15)
        stderr.close()
