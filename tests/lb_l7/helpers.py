"""Real parts for the layer 7 tests: certificates made with `cryptography`, backends that
run on their own event loop in a thread (HTTP echo of what arrived, a raw recorder of
every byte, a websocket echo, a silent one), and the load balancer as a real process.

Everything listens on 127.0.50.0/24 (this area's loopback range) on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LB_HOST = "127.0.50.10"
BACKEND_HOSTS = ("127.0.50.11", "127.0.50.12", "127.0.50.13")
HOSTNAME = "rancher.l7.test"
REPO = Path(__file__).resolve().parents[2]


# ---- certificates ------------------------------------------------------------------------


@dataclass
class CertFiles:
    cert: Path
    key: Path
    ca: Path
    serial: int


def make_cert(folder: Path, names: list[str], *, tag: str = "a") -> CertFiles:
    """A CA and a leaf for `names` (ECDSA P-256), written as PEM; key mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"l7 test CA {tag}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CertFiles(
        folder / f"{tag}.crt", folder / f"{tag}.key", folder / f"{tag}-ca.crt", serial
    )
    files.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(files.key, 0o600)
    return files


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    return context


# ---- backends on a background loop -----------------------------------------------------


class LoopThread:
    """An asyncio loop in a daemon thread; `call(coro)` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Awaitable[Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Backend:
    host: str
    port: int
    server: asyncio.Server | None = None
    received: bytearray = field(default_factory=bytearray)
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    healthy: bool = True  # echo_handler answers /healthz with 503 when False
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


Handler = Callable[[Backend, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _start(backend: Backend, handler: Handler) -> None:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend.connections += 1
        backend.writers.add(writer)
        try:
            await handler(backend, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            backend.writers.discard(writer)
            writer.close()

    backend.server = await asyncio.start_server(on_client, backend.host, backend.port)
    backend.port = backend.server.sockets[0].getsockname()[1]


async def _read_request(
    reader: asyncio.StreamReader,
    backend: Backend,
    writer: asyncio.StreamWriter | None = None,
) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """A minimal reader for requests the load balancer re-serialised (test side only)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        backend.received += err.partial
        return None
    backend.received += head
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if line]
    body = b""
    names = {k.lower(): v for k, v in headers}
    if writer is not None and names.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "content-length" in names:
        body = await reader.readexactly(int(names["content-length"]))
    elif names.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            backend.received += size_line + data
            if size == 0:
                break
            body += data[:-2]
        return lines[0], headers, body  # type: ignore[return-value]
    backend.received += body
    return lines[0], headers, body  # type: ignore[return-value]


async def echo_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers every request with JSON: request line, headers, body size, backend address."""
    while True:
        request = await _read_request(reader, backend, writer)
        if request is None:
            return
        line, headers, body = request
        if line.startswith("GET /healthz"):
            status = b"200 OK" if backend.healthy else b"503 Service Unavailable"
            backend.requests.append({"line": line, "headers": headers, "check": True})
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n" % status)
            await writer.drain()
            continue
        record = {
            "line": line,
            "headers": headers,
            "body": len(body),
            "backend": backend.address,
            "conn": id(writer),
        }
        backend.requests.append(record)
        payload = json.dumps(record).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nKeep-Alive: timeout=5\r\n"
            b"Connection: keep-alive\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        await writer.drain()


async def recorder_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Records every byte; answers 200 to anything (it should never be asked)."""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        backend.received += data
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def silent_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Reads the request and never answers (a hung node)."""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        backend.received += data


async def close_second_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers the first request on a connection with keep-alive, then closes on the next
    one without a byte: the stale keep-alive race a proxy must retry through."""
    first = await _read_request(reader, backend)
    if first is None:
        return
    backend.requests.append({"line": first[0], "backend": backend.address})
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    await writer.drain()
    await reader.read(65536)  # the next request arrives ...
    writer.transport.abort()  # ... and the connection dies without an answer


async def slow_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers every request after one second (a request in flight during a drain)."""
    while True:
        request = await _read_request(reader, backend)
        if request is None:
            return
        await asyncio.sleep(1.0)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        await writer.drain()


async def bulk_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """POST: counts the body without keeping it. GET /N: sends N bytes, chunked."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        names = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if lines[0].startswith("POST"):
            left = int(names["content-length"])
            while left:
                left -= len(await reader.read(min(left, 1 << 20)))
            payload = str(int(names["content-length"])).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
            )
        else:
            size = int(lines[0].split()[1].strip("/"))
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            block = b"z" * (1 << 20)
            while size:
                part = block[: min(size, len(block))]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                size -= len(part)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()


def start_backend(loop: LoopThread, host: str, handler: Handler, port: int = 0) -> Backend:
    backend = Backend(host, port)
    loop.call(_start(backend, handler))
    return backend


def stop_backend(loop: LoopThread, backend: Backend) -> None:
    async def stop() -> None:
        assert backend.server is not None
        backend.server.close()
        for writer in list(backend.writers):
            writer.transport.abort()

    loop.call(stop())


def start_websocket_backend(loop: LoopThread, host: str) -> Backend:
    import websockets.asyncio.server as ws_server

    backend = Backend(host, 0)

    async def echo(connection: Any) -> None:
        backend.requests.append(
            {"path": connection.request.path, "headers": dict(connection.request.headers)}
        )
        async for message in connection:
            await connection.send(f"echo:{message}")

    async def start() -> None:
        server = await ws_server.serve(echo, host, 0)
        backend.port = next(iter(server.sockets)).getsockname()[1]
        backend.server = server  # type: ignore[assignment]

    loop.call(start())
    return backend


# ---- the load balancer process ---------------------------------------------------------


ACCESS_LOG_DELAY = 0.6  # AccessLog's flush interval (0.5 s) and a margin


def free_port(host: str = LB_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LbProcess:
    proc: subprocess.Popen[str]
    port: int
    redirect_port: int | None
    stderr_path: Path
    access_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def access(self) -> list[dict[str, Any]]:
        """The access log's lines so far; a line is written at most 0.5 s after its request
        ends (`AccessLog` batches them), so this waits that long first."""
        time.sleep(ACCESS_LOG_DELAY)
        return [json.loads(line) for line in self.access_path.read_text().splitlines() if line]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def lb_command(*args: str) -> list[str]:
    """`rke2ha lb serve ARGS`, the way a user runs it."""
    return [sys.executable, "-m", "rke2ha", "lb", "serve", *args]


def start_lb(
    tmp: Path,
    cert: CertFiles,
    backends: list[str],
    *extra: str,
    redirect: bool = False,
) -> LbProcess:
    port = free_port()
    redirect_port = free_port() if redirect else None
    args = [
        "--layer",
        "7",
        "--listen",
        f"{LB_HOST}:{port}",
        "--cert",
        str(cert.cert),
        "--key",
        str(cert.key),
        "--hostname",
        HOSTNAME,
        "--access-log",
        str(tmp / "access.log"),
        "--admin",
        "off",
    ]
    for backend in backends:
        args += ["--backend", backend]
    if redirect_port is not None:
        args += ["--redirect-from", f"{LB_HOST}:{redirect_port}"]
    args += list(extra)
    stderr_path = tmp / "lb.stderr"
    proc = subprocess.Popen(
        lb_command(*args),
        stdout=subprocess.DEVNULL,
        stderr=stderr_path.open("w"),
        text=True,
        cwd=REPO,
    )
    lb = LbProcess(proc, port, redirect_port, stderr_path, tmp / "access.log")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"load balancer exited: {lb.stderr()}")
        if "listening on" in lb.stderr():
            return lb
        time.sleep(0.05)
    lb.stop()
    raise RuntimeError(f"load balancer did not start: {lb.stderr()}")


# ---- clients -------------------------------------------------------------------------------


def tls_connect(lb: LbProcess, ca: Path, timeout: float = 5) -> ssl.SSLSocket:
    raw = socket.create_connection((LB_HOST, lb.port), timeout=timeout)
    return client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME)


def read_response(
    sock: socket.socket, timeout: float = 5, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One response from a raw socket (Content-Length or close-delimited)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers and not head_only:
        need = int(headers["content-length"])
        while len(body) < need:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def closed_after(sock: socket.socket, timeout: float = 3) -> bool:
    """True when the peer closes the connection (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
