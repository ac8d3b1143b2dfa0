"""Helpers every benchmark shares: nginx backends, HAProxy / nginx / rke2ha front ends, wrk.

Everything runs on loopback (127.0.30.0/24 by default), in a temporary folder, bounded in
time; processes started here are stopped by the same object (context managers), by pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
BIG_BODY = 512 * 1024 * 1024


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"bench: missing {', '.join(missing)}; run `make system-deps`")


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a process, MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def _status_kib(pid: int, key: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return float(match.group(1)) if match else 0.0


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@dataclass
class Proc:
    """A process we started, stopped by pid (SIGTERM, then SIGKILL)."""

    popen: subprocess.Popen[bytes]
    name: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)  # a frozen process cannot die of SIGTERM
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


# ---- nginx backends -----------------------------------------------------------------------


NGINX_BACKEND = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    sendfile on;
    server {{
        listen {host}:{port} reuseport backlog=4096;
        root {root};
        location = / {{ return 200 "hello from {host}\\n"; }}
        location = /healthz {{ return 200 "ok\\n"; }}
        location / {{ }}
    }}
}}
"""


@dataclass
class NginxBackend:
    host: str
    port: int
    proc: Proc | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Backends:
    """N single-process nginx servers on loopback addresses serving `/`, `/healthz`, `/big`."""

    hosts: Sequence[str]
    workdir: Path
    port: int = 0
    items: list[NginxBackend] = field(default_factory=list)

    def start(self) -> Backends:
        need("nginx")
        root = self.workdir / "www"
        root.mkdir(parents=True, exist_ok=True)
        big = root / "big"
        if not big.exists():
            with big.open("wb") as handle:  # sparse: no disk used, reads return zeros
                handle.truncate(BIG_BODY)
        with big.open("rb") as handle:  # warm the page cache so every engine reads from RAM
            while handle.readinto(bytearray(1 << 22)):
                pass
        self.port = self.port or free_port(self.hosts[0])
        try:
            for host in self.hosts:
                backend = NginxBackend(host, self.port)
                self.items.append(backend)
                self.start_one(backend)
        except BaseException:
            self.stop()
            raise
        return self

    def start_one(self, backend: NginxBackend) -> None:
        folder = self.workdir / f"nginx-{backend.host}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "nginx.conf"
        conf.write_text(
            NGINX_BACKEND.format(
                dir=folder, host=backend.host, port=backend.port, root=self.workdir / "www"
            )
        )
        popen = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        backend.proc = Proc(popen, f"nginx {backend.address}")
        try:
            wait_port(backend.host, backend.port)
        except RuntimeError:
            backend.proc.stop()
            raise

    def stop(self) -> None:
        for backend in self.items:
            if backend.proc is not None:
                backend.proc.stop()


# ---- front ends ----------------------------------------------------------------------------------


def haproxy_config(listen: str, backends: Sequence[str], admin_socket: Path) -> str:
    servers = "\n".join(
        f"    server s{i} {b} check inter 1s fall 2 rise 2" for i, b in enumerate(backends)
    )
    return f"""
global
    nbthread 1
    maxconn 9000
    stats socket {admin_socket} mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    retries 2
    option redispatch
listen l4
    bind {listen}
    balance leastconn
    option httpchk GET /healthz
{servers}
"""


def nginx_stream_config(workdir: Path, listen: str, backends: Sequence[str]) -> str:
    servers = "\n".join(f"        server {b} max_fails=1 fail_timeout=10s;" for b in backends)
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/front.pid;
error_log {workdir}/front-error.log warn;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events {{ worker_connections 16384; }}
stream {{
    upstream nodes {{
        least_conn;
{servers}
    }}
    server {{
        listen {listen} reuseport backlog=4096;
        proxy_pass nodes;
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
        proxy_next_upstream on;
        proxy_next_upstream_tries 3;
    }}
}}
"""


def _started(proc: Proc, listen: str) -> Proc:
    """`proc` once it listens on `listen`; stopped (not leaked) when it never does."""
    host, port = listen.rsplit(":", 1)
    try:
        wait_port(host, int(port))
    except RuntimeError:
        proc.stop()
        raise
    return proc


def start_haproxy(workdir: Path, listen: str, backends: Sequence[str]) -> Proc:
    need("haproxy")
    conf = workdir / "haproxy.cfg"
    conf.write_text(haproxy_config(listen, backends, workdir / "haproxy.sock"))
    popen = subprocess.Popen(
        ["haproxy", "-db", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return _started(Proc(popen, "haproxy"), listen)


def start_nginx_stream(workdir: Path, listen: str, backends: Sequence[str]) -> Proc:
    need("nginx")
    conf = workdir / "nginx-front.conf"
    conf.write_text(nginx_stream_config(workdir, listen, backends))
    popen = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "front-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _started(Proc(popen, "nginx-stream"), listen)


def start_rke2ha(listen: str, backends: Sequence[str], admin: str, *extra: str) -> Proc:
    args = [PYTHON, "-m", "rke2ha", "lb", "serve", "--listen", listen, "--admin", admin]
    for backend in backends:
        args += ["--backend", backend]
    popen = subprocess.Popen(
        [*args, "--access-log", "off", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    return _started(Proc(popen, "rke2ha"), listen)


def http_json(url: str, timeout: float = 2.0) -> object:
    import json

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


# ---- wrk ---------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(
    url: str,
    *,
    seconds: int = 5,
    connections: int = 50,
    threads: int = 1,
    close: bool = False,
) -> WrkResult:
    need("wrk")
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 30, check=False
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None:
        print(out, file=sys.stderr)
        raise RuntimeError("wrk printed no rate")
    return WrkResult(
        float(rate.group(1)),
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        sum(int(g) for g in errors.groups()) if errors else 0,
        int(non2xx.group(1)) if non2xx else 0,
    )


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bulk_mb_per_s(host: str, port: int, path: str = "/big", timeout: float = 60.0) -> float:
    """Download `path` over one connection with large reads; MB/s of the body (1 MB = 1e6 B)."""
    buffer = bytearray(4 * 1024 * 1024)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        started = time.perf_counter()
        total = 0
        deadline = started + timeout
        while time.perf_counter() < deadline:
            received = sock.recv_into(buffer)
            if received == 0:
                break
            total += received
        elapsed = time.perf_counter() - started
    if total < BIG_BODY:
        raise RuntimeError(f"bulk download from {host}:{port} ended after {total} bytes")
    return total / elapsed / 1e6


@dataclass
class Outcome:
    started: float  # time.monotonic()
    ok: bool
    error: str = ""


async def _one_request(host: str, port: int, timeout: float) -> str:
    import asyncio

    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = await reader.read()
        finally:
            writer.close()
    if not data.startswith(b"HTTP/1.1 200"):
        return f"bad response {data[:30]!r}"
    return ""


async def request_load(
    host: str, port: int, *, seconds: float, concurrency: int = 16, timeout: float = 3.0
) -> list[Outcome]:
    """New-connection GET / requests from `concurrency` loops for `seconds` (bounded)."""
    import asyncio

    outcomes: list[Outcome] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                error = await _one_request(host, port, timeout)
            except (OSError, TimeoutError) as err:
                error = type(err).__name__
            outcomes.append(Outcome(started, not error, error))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes


def hold_idle(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` connected, silent client sockets (the caller closes them)."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        socks.append(sock)
    return socks


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
