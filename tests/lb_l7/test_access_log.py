"""The access log: one record schema at both layers, and `--access-log none|off` for no log.

Unit tests of the record builders, then real `rke2ha lb serve` processes on 127.0.142.0/24:
a layer 7 spec writes its layer 7 (443) and layer 4 (6443) lines into one file in one
shape, and `none` writes nothing at either layer (and no file named `none`).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

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
from tests.support.procs import stop

from rke2ha.lb.accesslog import AccessLog, log_target, utc_time
from rke2ha.lb.l7.accesslog import AccessRecord, Peer

COMMON = [
    "time",
    "layer",
    "frontend",
    "client",
    "client_port",
    "backend",
    "duration_ms",
    "bytes_to_client",
    "bytes_from_client",
]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HOSTNAME = "rancher.log.test"
LB = "127.0.142.74"  # the lab subnet below puts the load balancer at .74, nodes .75-.77
NODES = ("127.0.142.75", "127.0.142.76", "127.0.142.77")


# ---- the records -----------------------------------------------------------------------------


def test_time_is_iso_utc_with_milliseconds() -> None:
    assert utc_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert utc_time(1767225600.0429) == "2026-01-01T00:00:00.042Z"


@pytest.mark.parametrize(
    ("value", "target"), [("none", None), ("off", None), (None, None), ("-", "-"), ("a", "a")]
)
def test_none_and_off_mean_no_log(value: str | None, target: str | None) -> None:
    assert log_target(value) == target


def _layer4_line(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "l4.log"

    async def write() -> None:
        log = AccessLog(str(path))
        log.connection(
            client=("203.0.113.9", 40000),
            frontend="port-6443",
            backend="10.0.0.1:6443",
            bytes_up=10,
            bytes_down=20,
            started=time.monotonic() - 0.25,
            outcome="closed",
            tries=1,
        )
        log.close()

    asyncio.run(write())
    return dict(json.loads(path.read_text()))


def test_both_layers_write_the_same_leading_fields_in_the_same_units(tmp_path: Path) -> None:
    four = _layer4_line(tmp_path)
    record = AccessRecord(
        Peer("203.0.113.9", 40001, "https-443"), "POST", b"/v3/x?token=s", started=100.0
    )
    record.status, record.bytes, record.uploaded = 201, 300, 40
    record.backend, record.upstream_s = "10.0.0.2:80", 0.0125
    seven = json.loads(record.line(now=100.5, at=1767225600.0))
    assert list(four)[: len(COMMON)] == COMMON == list(seven)[: len(COMMON)]
    assert (four["layer"], seven["layer"]) == (4, 7)
    assert TIME.match(four["time"]) and seven["time"] == "2026-01-01T00:00:00.000Z"
    assert 250 <= four["duration_ms"] < 1000 and seven["duration_ms"] == 500.0
    assert (four["client"], four["client_port"]) == ("203.0.113.9", 40000)
    assert (four["bytes_to_client"], four["bytes_from_client"]) == (20, 10)
    assert (seven["bytes_to_client"], seven["bytes_from_client"]) == (300, 40)
    assert (four["outcome"], four["tries"]) == ("closed", 1)
    assert (seven["method"], seven["path"], seven["status"]) == ("POST", "/v3/x", 201)
    assert seven["upstream_ms"] == 12.5 and "reason" not in seven


# ---- real processes -------------------------------------------------------------------------


def _free_offset() -> int:
    """N with 80+N, 443+N, 6443+N and 9345+N free on the load balancer's address."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((LB, 0))
            offset = int(probe.getsockname()[1]) - 80
        if not 0 < offset <= 60_000 - 9345:
            continue
        try:
            for port in (80, 443, 6443, 9345):
                with socket.socket() as sock:
                    sock.bind((LB, port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port offset")


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    err = tmp_path / "lb.err"
    with err.open("w") as stderr, (tmp_path / "lb.out").open("w") as stdout:
        proc = subprocess.Popen(lb_command(*args), stdout=stdout, stderr=stderr, cwd=tmp_path)
    deadline = time.monotonic() + 20
    while "listening on" not in err.read_text():
        assert proc.poll() is None, err.read_text()
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    return proc


def test_a_layer7_spec_logs_both_layers_in_one_shape(
    tmp_path: Path, loop_thread: LoopThread
) -> None:
    offset = _free_offset()
    cert = make_cert(tmp_path / "certs", [HOSTNAME], tag="rancher")
    spec = tmp_path / "rke2ha.yaml"
    spec.write_text(
        f"""name: logs
hostname: {HOSTNAME}
provider: lab
lab: {{subnet: 127.0.142.64/26, port_offset: {offset}}}
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}]
load_balancer:
  layer: 7
  ports: [443, 6443]
  health: {{interval: 300ms, timeout: 300ms, rise: 1, fall: 1}}
  tls: {{cert: {cert.cert}, key: {cert.key}}}
dns: {{zone: log.test}}
"""
    )
    nodes = [start_backend(loop_thread, host, echo_handler, 80 + offset) for host in NODES]
    log = tmp_path / "access.log"
    proc = _serve(
        tmp_path,
        "-f",
        str(spec),
        "--port-offset",
        str(offset),
        "--access-log",
        str(log),
        "--admin",
        "off",
    )
    try:
        deadline = time.monotonic() + 10
        status = 0
        while status != 200 and time.monotonic() < deadline:
            raw = socket.create_connection((LB, 443 + offset), timeout=5)
            with client_context(cert.ca).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                tls.sendall(f"PUT /v3/a?t=1 HTTP/1.1\r\nHost: {HOSTNAME}\r\n".encode())
                tls.sendall(b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
                status = read_response(tls)[0]
            time.sleep(0.1)
        assert status == 200
        socket.create_connection((LB, 6443 + offset), timeout=5).close()
    finally:
        stop(proc, timeout=15)  # a drain flushes the layer 4 log
        for node in nodes:
            assert node.server is not None
            loop_thread.loop.call_soon_threadsafe(node.server.close)
    lines = [json.loads(text) for text in log.read_text().splitlines()]
    seven = [line for line in lines if line["layer"] == 7 and line["status"] == 200]
    four = [line for line in lines if line["layer"] == 4]
    assert seven and four, lines
    for line in (seven[-1], four[-1]):
        assert list(line)[: len(COMMON)] == COMMON, line
        assert TIME.match(line["time"]) and line["client"] == "127.0.0.1", line
    assert seven[-1]["frontend"] == f"https-{443 + offset}" and seven[-1]["path"] == "/v3/a"
    assert seven[-1]["bytes_from_client"] == 3
    assert four[-1]["frontend"] == f"port-{6443}"


@pytest.mark.parametrize("layer", ["4", "7"])
@pytest.mark.parametrize("value", ["none", "off"])
def test_no_access_log_at_either_layer(
    tmp_path: Path, loop_thread: LoopThread, layer: str, value: str
) -> None:
    node = start_backend(loop_thread, NODES[0], echo_handler)
    with socket.socket() as probe:
        probe.bind((LB, 0))
        port = int(probe.getsockname()[1])
    args = ["--listen", f"{LB}:{port}", "--backend", node.address, "--admin", "off"]
    cert = make_cert(tmp_path / "certs", [HOSTNAME])
    if layer == "7":
        args += ["--layer", "7", "--cert", str(cert.cert), "--key", str(cert.key)]
        args += ["--hostname", HOSTNAME]
    proc = _serve(tmp_path, *args, "--access-log", value)
    try:
        raw = socket.create_connection((LB, port), timeout=5)
        sock = raw
        if layer == "7":
            sock = client_context(cert.ca).wrap_socket(raw, server_hostname=HOSTNAME)
        with sock:
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode()
            )
            assert read_response(sock)[0] == 200
    finally:
        stop(proc, timeout=15)
        assert node.server is not None
        loop_thread.loop.call_soon_threadsafe(node.server.close)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certs", "lb.err", "lb.out"]
    assert (tmp_path / "lb.out").read_text() == ""  # not on stdout either
