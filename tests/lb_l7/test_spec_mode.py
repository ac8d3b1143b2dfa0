"""`load_balancer.layer: 7` from a spec: 443 terminates TLS, 80 redirects, 6443/9345 stay
layer 4, and the nodes' ingress health check (from the healthplan) decides who serves."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    Backend,
    LoopThread,
    client_context,
    echo_handler,
    lb_command,
    make_cert,
    read_response,
    start_backend,
)
from helpers import _read_request as read_request

from rke2ha.errors import UsageError
from rke2ha.lb.config import from_spec
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


def _serve_spec(
    folder: Path, spec_path: Path, offset: int, workers: int
) -> subprocess.Popen[bytes]:
    """`lb serve -f` of the spec, once it listens (its log in folder/lb.err)."""
    err_path = folder / "lb.err"
    with err_path.open("w") as stderr:
        proc = subprocess.Popen(
            lb_command(
                *("-f", str(spec_path), "--port-offset", str(offset), "--access-log", "off"),
                *("--workers", str(workers)),
            ),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 15
    while "listening on" not in err_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            proc.wait(15)
            raise AssertionError(err_path.read_text())
        time.sleep(0.05)
    time.sleep(0.5)  # the first checks pass
    return proc


def test_spec_layer7_config(tmp_path: Path) -> None:
    config = from_spec(load_spec(write_spec(tmp_path, 20000, ADMIN_PORT)), port_offset=20000)
    fronts = {f.port: f for f in config.frontends}
    assert {p: f.kind for p, f in fronts.items()} == {
        20080: "redirect",
        20443: "https",
        26443: "tcp",
        29345: "tcp",
    }
    https = fronts[20443]
    assert (https.host, https.name) == (LB, "https-20443")
    assert [(b.host, b.port, b.name) for b in https.backends] == [
        (n, 20080, f"node-{i}") for i, n in enumerate(NODES, 1)
    ]
    assert fronts[20080].backends == ()  # the redirect answers itself (no ACME passthrough)
    assert https.idle_timeout == 1800.0  # http_timeout, Rancher's advice
    assert config.l7 is not None
    assert config.l7.forwarded_port == 20443 and config.l7.hostname == HOSTNAME
    assert config.l7.redirect_code == 308
    probe = https.health.probes[0]
    assert (probe.kind, probe.path, probe.port, probe.host_header) == (
        "http",
        "/healthz",
        20080,
        None,  # no Rancher Host: the ingress's catch-all server answers /healthz
    )
    assert fronts[26443].health.probes[0].path == "/readyz"
    assert config.admin == (LB, 28404)  # the offset moves the admin port as well


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
    proc = _serve_spec(tmp_path, spec_path, offset, workers)
    try:
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
        # one admin endpoint shows the layer 7 frontends beside the layer 4 ones; workers
        # publish their counters every 50 ms (requests and bytes need not arrive in the same
        # publication), so the last request's figures may take a few of those on a loaded host
        deadline = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(f"http://{LB}:{admin_port}/status", timeout=5) as reply:
                status_doc = json.loads(reply.read())
            fronts = {f["name"]: f for f in status_doc["frontends"]}
            https = fronts[f"https-{443 + offset}"]
            sent = sum(b["bytes_to_backend"] for b in https["backends"])
            if (https["total"] >= 7 and sent >= 3000) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(https["backends"]) == 3
        assert all(b["state"] == "up" for b in https["backends"])
        # Every worker's clients are counted (the supervisor sums the workers' counters):
        # 7 connections with one request each, 6 GETs and the POST.
        assert https["total"] == 7
        assert sum(b["total"] for b in https["backends"]) == 7
        assert all(b["total"] >= 1 for b in https["backends"])
        assert status_doc["workers"] == workers
        # per-node byte counters count layer 7 responses too
        assert all(b["bytes_from_backend"] > 0 for b in https["backends"])
        assert sum(b["bytes_to_backend"] for b in https["backends"]) >= 3000  # the POST body
        assert {f"port-{6443}", f"port-{9345}"} <= set(fronts)
        # 6443 and 9345 are relayed at layer 4 by the same process
        for port in (6443, 9345):
            socket.create_connection((LB, port + offset), timeout=5).close()
        # SIGHUP re-reads the spec: node-3 leaves, and gets no more requests
        spec_path.write_text(spec_path.read_text().replace("  - {name: node-3}\n", ""))
        proc.send_signal(signal.SIGHUP)
        _wait_for_reload(tmp_path / "lb.err", workers)
        served = set()
        for _ in range(6):
            raw = socket.create_connection((LB, 443 + offset), timeout=5)
            with client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                tls.sendall(f"GET /after HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
                served.add(json.loads(read_response(tls)[2])["backend"])
        assert served == {f"{NODES[0]}:{80 + offset}", f"{NODES[1]}:{80 + offset}"}
        _stops_cleanly(proc, tmp_path / "lb.err")
    finally:
        proc.terminate()
        proc.wait(15)


def _stops_cleanly(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM after a reload: exit 0, every generation's shared memory closed once."""
    proc.terminate()
    assert proc.wait(15) == 0, log_path.read_text()[-2000:]
    text = log_path.read_text()
    assert "Traceback" not in text and "error:" not in text, text[-2000:]


def _wait_for_reload(log_path: Path, workers: int) -> None:
    """Until the reload is applied: in the process (one worker), or by a new generation of
    workers listening (which loaded the certificate afresh)."""
    deadline = time.monotonic() + 15
    while True:
        text = log_path.read_text()
        if workers == 1 and "certificate reloaded" in text:
            return
        if workers > 1 and text.count(f"{workers} workers listening") >= 2:
            return
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.05)


async def _slow_or_echo(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The echo node, except that `/slow` answers after 3 s (a request in flight)."""
    while True:
        request = await read_request(reader, backend, writer)
        if request is None:
            return
        line = request[0]
        if line.startswith("GET /healthz"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            continue
        if line.startswith("GET /slow"):
            await asyncio.sleep(3.0)
        backend.requests.append({"line": line})
        payload = json.dumps({"backend": backend.address}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
        await writer.drain()


def _get(tls: ssl.SSLSocket, path: str) -> tuple[int, dict[str, str], bytes]:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
    return read_response(tls)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_applies_a_layer7_spec_change_without_dropping_a_request(
    tmp_path: Path, loop_thread: LoopThread, workers: int
) -> None:
    """A node added, one removed and the redirect code changed, applied by SIGHUP at once,
    while a request is in flight on a keep-alive connection."""
    offset = free_offset()
    spec_path = write_spec(tmp_path, offset, ADMIN_PORT)
    hosts = (*NODES, "127.0.50.78")  # the lab gives node-4 the next address
    nodes = {h: start_backend(loop_thread, h, _slow_or_echo, 80 + offset) for h in hosts}
    err_path = tmp_path / "lb.err"
    proc = _serve_spec(tmp_path, spec_path, offset, workers)
    try:
        ca = tmp_path / "certs" / "rancher-ca.crt"
        with socket.create_connection((LB, 80 + offset), timeout=5) as plain:
            plain.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(plain)[0] == 308
        raw = socket.create_connection((LB, 443 + offset), timeout=10)
        with client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME) as kept:
            assert _get(kept, "/first")[0] == 200  # a keep-alive connection, in use
            kept.sendall(f"GET /slow HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
            time.sleep(0.3)  # the request is at a node now
            text = spec_path.read_text()
            text = text.replace(
                "  - {name: node-3}\n", "  - {name: node-4, address: 127.0.50.78}\n"
            )
            text = text.replace("  layer: 7\n", "  layer: 7\n  redirect_code: 301\n")
            spec_path.write_text(text)
            proc.send_signal(signal.SIGHUP)
            _wait_for_reload(err_path, workers)
            status, headers, _ = read_response(kept, timeout=10)
            assert status == 200  # the request in flight was answered
            if workers == 1:  # the same process goes on serving the connection
                assert headers.get("connection") != "close"
                assert _get(kept, "/again")[0] == 200
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection((LB, 80 + offset), timeout=5) as plain:
                plain.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                code = read_response(plain)[0]
            if code == 301 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 301
        time.sleep(1.0)  # node-4 passes its first check (rise 1, every 300 ms)
        before = {h: len(n.requests) for h, n in nodes.items()}
        for _ in range(12):
            raw = socket.create_connection((LB, 443 + offset), timeout=5)
            with client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                assert _get(tls, "/after")[0] == 200
        served = {h for h, n in nodes.items() if len(n.requests) > before[h]}
        assert served == {NODES[0], NODES[1], "127.0.50.78"}
        _stops_cleanly(proc, err_path)
    finally:
        proc.terminate()
        proc.wait(15)
