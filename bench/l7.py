"""Layer 7: rke2ha against HAProxy (`mode http`, nbthread 1) and nginx (worker_processes 1),
all three terminating TLS with the same ECDSA P-256 certificate in front of the same three
nginx backends (bench/common.py), in one run.

Rows: HTTPS keep-alive req/s and new-TLS-connection req/s (wrk with `Connection: close`),
each measured in interleaved rounds (the machine is shared, so each engine sees the same
noise) and reported as the median; p50/p99 latency; websocket round-trip latency through
rke2ha (and HAProxy, and with no proxy, for scale). Every engine sets X-Forwarded-* and
keeps a keep-alive pool to the nodes, and logs nothing per request, so the work is the
same. Writes bench/results/l7.json and prints a markdown table.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    REPO,
    Backends,
    Proc,
    WrkResult,
    children_of,
    free_port,
    need,
    wait_port,
    workdir,
    wrk,
)

LB_HOST = "127.0.50.30"
BACKEND_HOSTS = ["127.0.50.31", "127.0.50.32", "127.0.50.33"]
WS_HOST = "127.0.50.34"
PORTS = {"rke2ha": 32443, "haproxy": 32444, "nginx": 32445, "rke2ha-2w": 32446}
HOSTNAME = "rancher.bench.test"
SECONDS = 3
ROUNDS = 5
CONNECTIONS = 50
WS_ROUND_TRIPS = 2000


# ---- certificate -------------------------------------------------------------------------


def make_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """Self-signed ECDSA P-256 for HOSTNAME: (cert, key, cert+key bundle for HAProxy)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    paths = folder / "tls.crt", folder / "tls.key", folder / "bundle.pem"
    paths[0].write_bytes(cert_pem)
    for path, data in ((paths[1], key_pem), (paths[2], cert_pem + key_pem)):
        path.write_bytes(data)
        os.chmod(path, 0o600)
    return paths


# ---- the three front ends -----------------------------------------------------------------


def start_rke2ha_l7(
    folder: Path,
    cert: Path,
    key: Path,
    backends: list[str],
    health: str = "http:/healthz",
    workers: int = 1,
) -> Proc:
    args = [
        PYTHON, "-m", "rke2ha", "lb", "serve", "--layer", "7",
        "--listen", f"{LB_HOST}:{PORTS['rke2ha' if workers == 1 else 'rke2ha-2w']}",
        "--workers", str(workers),
        "--cert", str(cert), "--key", str(key), "--hostname", HOSTNAME,
        "--health", health, "--access-log", "off", "--admin", "off",
    ]  # fmt: skip
    for backend in backends:
        args += ["--backend", backend]
    popen = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=(folder / f"rke2ha-{workers}.err").open("w"),
        cwd=REPO,
    )
    wait_port(LB_HOST, PORTS["rke2ha" if workers == 1 else "rke2ha-2w"], timeout=20)
    return Proc(popen, f"rke2ha x{workers}")


def start_haproxy_l7(folder: Path, bundle: Path, backends: list[str], httpchk: bool = True) -> Proc:
    need("haproxy")
    servers = "\n".join(
        f"    server s{i} {b} check inter 1s fall 2 rise 2" for i, b in enumerate(backends)
    )
    conf = folder / "haproxy.cfg"
    conf.write_text(f"""
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    option http-keep-alive
    timeout connect 30s
    timeout client 1800s
    timeout server 1800s
    timeout tunnel 1800s
    timeout http-request 10s
frontend https
    bind {LB_HOST}:{PORTS["haproxy"]} ssl crt {bundle} alpn http/1.1 ssl-min-ver TLSv1.2
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Port 443
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend nodes
backend nodes
    balance leastconn
    http-reuse safe
    {"option httpchk GET /healthz" if httpchk else ""}
{servers}
""")
    popen = subprocess.Popen(
        ["haproxy", "-db", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(LB_HOST, PORTS["haproxy"])
    return Proc(popen, "haproxy")


def start_nginx_l7(folder: Path, cert: Path, key: Path, backends: list[str]) -> Proc:
    need("nginx")
    servers = "\n".join(f"        server {b} max_fails=1 fail_timeout=10s;" for b in backends)
    conf = folder / "nginx-l7.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx-l7.pid;
error_log {folder}/nginx-l7-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    upstream nodes {{
        least_conn;
{servers}
        keepalive 64;
    }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen {LB_HOST}:{PORTS["nginx"]} ssl reuseport backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Port 443;
            proxy_set_header X-Forwarded-Host $host;
            proxy_connect_timeout 30s;
            proxy_read_timeout 1800s;
            proxy_send_timeout 1800s;
        }}
    }}
}}
""")
    popen = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(folder), "-e", str(folder / "nginx-l7-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(LB_HOST, PORTS["nginx"])
    return Proc(popen, "nginx")


# ---- websocket round trips ---------------------------------------------------------------


WS_ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(connection):
    async for message in connection:
        await connection.send(message)

async def main():
    async with serve(echo, sys.argv[1], int(sys.argv[2])):
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start_websocket_echo(host: str, port: int) -> Proc:
    """A websocket echo server (the `websockets` library) in its own process."""
    popen = subprocess.Popen(
        [PYTHON, "-c", WS_ECHO, host, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(host, port)
    return Proc(popen, "websocket echo")


async def websocket_rtt(url: str, host: str, port: int, tls: bool) -> dict[str, float]:
    """p50/p99/mean of WS_ROUND_TRIPS sequential 64-byte echoes over one websocket (ms)."""
    from websockets.asyncio.client import connect

    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    samples = []
    payload = "x" * 64
    async with asyncio.timeout(60):
        async with connect(
            url, ssl=context, host=host, port=port, server_hostname=HOSTNAME if tls else None
        ) as ws:
            for _ in range(100):  # warm-up
                await ws.send(payload)
                await ws.recv()
            for _ in range(WS_ROUND_TRIPS):
                started = time.perf_counter()
                await ws.send(payload)
                await ws.recv()
                samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(samples[len(samples) // 2], 3),
        "p99_ms": round(samples[int(len(samples) * 0.99)], 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


# ---- the run --------------------------------------------------------------------------------


def _machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}"


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (workers), seconds."""
    total = 0.0
    for proc in [pid, *children_of(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(engines: list[str], pids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Interleaved rounds: in each, every engine runs keep-alive then new-connection wrk back
    to back, so the ratio to HAProxy is taken between neighbours in time (the shared machine
    drifts between rounds); rates and ratios are the medians over rounds."""
    keys = (
        "keepalive", "newconn", "ka_p50", "ka_p99", "errors", "ka_ratio", "nc_ratio",
        "ka_cpu_us", "nc_cpu_us",
    )  # fmt: skip
    samples: dict[str, dict[str, list[float]]] = {e: {k: [] for k in keys} for e in engines}
    for round_no in range(ROUNDS):
        got: dict[str, tuple[WrkResult, WrkResult]] = {}
        for close in (False, True):
            for engine in engines:
                url = f"https://{LB_HOST}:{PORTS[engine]}/"
                cpu_before = cpu_seconds(pids[engine])
                result = wrk(url, seconds=SECONDS, connections=CONNECTIONS, close=close)
                # CPU per request does not depend on what else the machine runs meanwhile.
                spent = cpu_seconds(pids[engine]) - cpu_before
                served = max(result.requests_per_s * SECONDS, 1.0)
                samples[engine]["nc_cpu_us" if close else "ka_cpu_us"].append(spent / served * 1e6)
                got[engine] = (got[engine][0], result) if close else (result, result)
        for engine in engines:
            ka, nc = got[engine]
            row = samples[engine]
            row["keepalive"].append(ka.requests_per_s)
            row["newconn"].append(nc.requests_per_s)
            row["ka_p50"].append(ka.p50_ms)
            row["ka_p99"].append(ka.p99_ms)
            row["errors"].append(ka.errors + ka.non_2xx + nc.errors + nc.non_2xx)
            row["ka_ratio"].append(ka.requests_per_s / got["haproxy"][0].requests_per_s)
            row["nc_ratio"].append(nc.requests_per_s / got["haproxy"][1].requests_per_s)
            print(
                f"  round {round_no + 1} {engine:9} keep-alive {ka.requests_per_s:9.0f} req/s  "
                f"new TLS {nc.requests_per_s:7.0f} req/s",
                flush=True,
            )
    return {
        engine: {
            "keepalive_rps": _median(row["keepalive"]),
            "newconn_rps": _median(row["newconn"]),
            "keepalive_vs_haproxy": round(statistics.median(row["ka_ratio"]), 3),
            "newconn_vs_haproxy": round(statistics.median(row["nc_ratio"]), 3),
            "keepalive_p50_ms": round(statistics.median(row["ka_p50"]), 3),
            "keepalive_p99_ms": round(statistics.median(row["ka_p99"]), 3),
            "errors": int(sum(row["errors"])),
            "keepalive_cpu_us_per_request": round(statistics.median(row["ka_cpu_us"]), 1),
            "newconn_cpu_us_per_request": round(statistics.median(row["nc_cpu_us"]), 1),
            "samples": row,
        }
        for engine, row in samples.items()
    }


_EMPTY_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def wrk_session_resumption(cert: Path, key: Path) -> dict[str, int]:
    """How often wrk resumes its TLS session on a new connection, counted by a plain Python
    TLS server (so the new-TLS row says what kind of handshake it measures)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    counts = {"resumed": 0, "full": 0}
    listener = socket.socket()
    listener.bind((LB_HOST, 0))
    listener.listen(64)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(2)
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(4096)
                    conn.sendall(_EMPTY_CLOSE)
                    counts["resumed" if conn.session_reused else "full"] += 1
            except OSError:
                raw.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        wrk(f"https://{LB_HOST}:{port}/", seconds=1, connections=1, close=True)
    finally:
        stop.set()
        server.join(timeout=3)
        listener.close()
    return counts


def table(results: dict[str, Any]) -> str:
    engines = results["engines"]
    lines = [
        f"Layer 7 (TLS on the front), {results['date']}, {results['machine']}; "
        f"wrk -t1 -c{CONNECTIONS} {SECONDS}s x {ROUNDS} interleaved rounds; medians of rates "
        "and of per-round ratios to HAProxy.",
        "",
        "| engine | HTTPS keep-alive req/s | × HAProxy | new TLS conn req/s | × HAProxy "
        "| keep-alive p50 / p99 ms | CPU µs/req keep-alive | CPU µs/req new TLS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in engines.items():
        ka_ratio = row["keepalive_vs_haproxy"]
        nc_ratio = row["newconn_vs_haproxy"]
        lines.append(
            f"| {name} | {row['keepalive_rps']:.0f} | {ka_ratio:.2f} "
            f"| {row['newconn_rps']:.0f} | {nc_ratio:.2f} "
            f"| {row['keepalive_p50_ms']:.2f} / {row['keepalive_p99_ms']:.2f} "
            f"| {row['keepalive_cpu_us_per_request']:.0f} "
            f"| {row['newconn_cpu_us_per_request']:.0f} |"
        )
    sessions = results.get("wrk_tls_sessions")
    if sessions:
        total = sessions["resumed"] + sessions["full"]
        lines += [
            "",
            f"wrk resumed its TLS session on {sessions['resumed']} of {total} new connections "
            "(counted by a plain Python TLS server in this run): the new-TLS rows measure "
            "resumed TLS 1.3 handshakes (a key exchange, no certificate signature).",
        ]
    lines.append("")
    lines.append(
        "rke2ha-2w is `--workers 2`, shown for scale only: the targets compare the one-process "
        "rke2ha with HAProxy `nbthread 1`."
    )
    ws = results["websocket_rtt"]
    lines += [
        "",
        f"Websocket round trip (64 B echo, {WS_ROUND_TRIPS} sequential, ms):",
        "",
        "| path | p50 | p99 | mean |",
        "|---|---:|---:|---:|",
    ]
    for name, row in ws.items():
        lines.append(f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['mean_ms']} |")
    return "\n".join(lines)


def run(results_dir: Path) -> None:
    need("wrk", "nginx", "haproxy")
    with workdir("rke2ha-bench-l7-") as folder:
        cert, key, bundle = make_certificate(folder)
        backends = Backends(BACKEND_HOSTS, folder).start()
        addresses = [b.address for b in backends.items]
        procs: list[Proc] = []
        echo_port = free_port(WS_HOST)
        echo = start_websocket_echo(WS_HOST, echo_port)
        try:
            procs.append(start_rke2ha_l7(folder, cert, key, addresses))
            procs.append(start_haproxy_l7(folder, bundle, addresses))
            procs.append(start_nginx_l7(folder, cert, key, addresses))
            # For scale only: this machine has 2 cores shared with wrk and the backends.
            procs.append(start_rke2ha_l7(folder, cert, key, addresses, workers=2))
            time.sleep(2.5)  # let every engine's health checks see the nodes up
            pids = dict(
                zip(
                    ["rke2ha", "haproxy", "nginx", "rke2ha-2w"], [p.pid for p in procs], strict=True
                )
            )
            engines = measure(["rke2ha", "haproxy", "nginx", "rke2ha-2w"], pids)
            sessions = wrk_session_resumption(cert, key)
            for proc in procs:
                proc.stop()
            procs.clear()
            # Websocket latency: the same echo server, directly and through each front.
            ws_backend = f"{WS_HOST}:{echo_port}"
            # The echo server answers plain HTTP with 426, so these fronts check TCP only.
            procs.append(start_rke2ha_l7(folder, cert, key, [ws_backend], health="tcp"))
            procs.append(start_haproxy_l7(folder, bundle, [ws_backend], httpchk=False))
            time.sleep(2.5)
            websocket = {
                "direct (no proxy)": asyncio.run(
                    websocket_rtt(f"ws://{ws_backend}/", WS_HOST, echo_port, False)
                ),
            }
            for engine in ("rke2ha", "haproxy"):
                url = f"wss://{HOSTNAME}:{PORTS[engine]}/"
                websocket[engine] = asyncio.run(websocket_rtt(url, LB_HOST, PORTS[engine], True))
        finally:
            for proc in procs:
                proc.stop()
            echo.stop()
            backends.stop()
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "engines": engines,
        "websocket_rtt": websocket,
        "wrk_tls_sessions": sessions,
        "targets": {
            "keepalive_vs_haproxy": 0.5,
            "newconn_vs_haproxy": 0.7,
        },
        "ratios": {
            "keepalive_vs_haproxy": engines["rke2ha"]["keepalive_vs_haproxy"],
            "newconn_vs_haproxy": engines["rke2ha"]["newconn_vs_haproxy"],
        },
    }
    (results_dir / "l7.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = table(results)
    (results_dir / "l7.md").write_text(text + "\n")
    print(text)
