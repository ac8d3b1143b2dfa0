"""A request is sent to a second node only when `retry.may_retry` allows it: over real sockets.

One `rke2ha lb serve --layer 7` process for the module, in front of three stand-in nodes
(blocking sockets in threads) that count, per test case, which node saw the request and
whether it came on a new or a reused connection. The path names what the node does with
it: `close` (reads it, closes without a byte), `reset` (RST), `half` (part of a response
head, then close). Every method x body framing x {new, reused} node connection x
behaviour: the request reaches three nodes (the two retries) exactly when it is
idempotent, has no body, ran on a reused keep-alive connection and got no byte back;
otherwise one node. Everything listens on 127.0.140.0/24.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import HOSTNAME, CertFiles, client_context, lb_command, make_cert, read_response
from tests.support.procs import stop

LB_HOST = "127.0.140.10"
NODE_HOSTS = ("127.0.140.11", "127.0.140.12", "127.0.140.13")
REPO = Path(__file__).resolve().parents[2]

METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH")
RETRIED_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}  # RFC 9110 §9.2.2
BODIES = {
    "body": b"Content-Length: 5\r\n\r\nhello",
    "none": b"\r\n",
    "length0": b"Content-Length: 0\r\n\r\n",
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
}
BEHAVIOURS = ("close", "reset", "half")
CONNECTIONS = ("new", "reused")


# ---- the stand-in nodes ------------------------------------------------------------------


@dataclass
class _Conn:
    sock: socket.socket
    idle: bool = True  # waiting for the first byte of a next request


@dataclass
class Nodes:
    """Three nodes on one port; `seen[case]` lists (node, requests before it on its conn)."""

    port: int = 0
    seen: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    conns: list[_Conn] = field(default_factory=list)
    listeners: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for host in NODE_HOSTS:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.port))
            self.port = sock.getsockname()[1]
            sock.listen(64)
            self.listeners.append(sock)
            threading.Thread(target=self._accept, args=(sock, host), daemon=True).start()

    def stop(self) -> None:
        for sock in self.listeners:
            sock.close()
        self.drop_idle()

    def drop_idle(self) -> None:
        """Close every connection waiting for a next request (the load balancer's pool)."""
        with self.lock:
            for conn in self.conns:
                if conn.idle:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket, host: str) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            conn = _Conn(sock)
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, host), daemon=True).start()

    def _serve(self, conn: _Conn, host: str) -> None:
        sock = conn.sock
        sock.settimeout(30)
        buffer = b""
        served = 0
        try:
            while True:
                conn.idle = not buffer
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    conn.idle = False
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split()[1]
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:])
                }
                if fields.get("expect", "").lower() != "100-continue":
                    buffer = self._read_body(sock, fields, buffer)
                if path.startswith("/t/"):
                    _, _, behaviour, case = path.split("/", 3)
                    with self.lock:
                        self.seen.setdefault(case, []).append((host, served))
                    self._fail(sock, behaviour)
                    return
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                served += 1
        except OSError:
            return
        finally:
            sock.close()
            with self.lock:
                self.conns.remove(conn)

    @staticmethod
    def _read_body(sock: socket.socket, fields: dict[str, str], buffer: bytes) -> bytes:
        """The request's body read (and dropped); what follows it is returned."""
        if "content-length" in fields:
            need = int(fields["content-length"])
            while len(buffer) < need:
                data = sock.recv(65536)
                if not data:
                    raise OSError("closed mid-body")
                buffer += data
            return buffer[need:]
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while b"0\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    raise OSError("closed mid-body")
                buffer += data
            return buffer.split(b"0\r\n\r\n", 1)[1]
        return buffer

    @staticmethod
    def _fail(sock: socket.socket, behaviour: str) -> None:
        if behaviour == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif behaviour == "half":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n")
        elif behaviour != "close":
            raise AssertionError(behaviour)


# ---- the module's load balancer ----------------------------------------------------------


@dataclass
class Front:
    port: int
    cert: CertFiles
    nodes: Nodes
    pool_warm: bool = True  # the load balancer may hold idle connections to the nodes

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((LB_HOST, self.port), timeout=10)
        return client_context(self.cert.ca).wrap_socket(raw, server_hostname=HOSTNAME)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp("no_replay")
    cert = make_cert(tmp / "tls", [HOSTNAME])
    nodes = Nodes()
    nodes.start()
    with socket.socket() as probe:
        probe.bind((LB_HOST, 0))
        port = probe.getsockname()[1]
    args = ["--layer", "7", "--listen", f"{LB_HOST}:{port}", "--balance", "roundrobin"]
    args += ["--cert", str(cert.cert), "--key", str(cert.key), "--hostname", HOSTNAME]
    args += ["--admin", "off", "--access-log", "off"]
    for host in NODE_HOSTS:
        args += ["--backend", f"{host}:{nodes.port}"]
    stderr = tmp / "lb.stderr"
    with stderr.open("w") as out:
        proc = subprocess.Popen(lb_command(*args), stdout=subprocess.DEVNULL, stderr=out, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in stderr.read_text():
            assert proc.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        yield Front(port, cert, nodes)
    finally:
        stop(proc, timeout=10)
        nodes.stop()


# ---- the matrix ------------------------------------------------------------------------------


def _expected(method: str, body: str, connection: str, behaviour: str) -> int:
    retried = (
        connection == "reused"
        and method in RETRIED_METHODS
        and body in ("none", "length0")
        and behaviour in ("close", "reset")
    )
    return len(NODE_HOSTS) if retried else 1  # a retry per other node (`--retries` 2)


CASES = list(itertools.product(CONNECTIONS, BEHAVIOURS, METHODS, BODIES))


def _warm_every_node(front: Front, sock: ssl.SSLSocket) -> None:
    """One answered request per node on `sock`: the pool then holds a reused connection to
    each (round robin over three serving nodes)."""
    for _ in NODE_HOSTS:
        sock.sendall(f"GET /ok HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        assert read_response(sock)[0] == 200
    front.pool_warm = True


def _empty_pool(front: Front) -> None:
    """No idle connection left in the load balancer's pool: the next try connects anew."""
    if front.pool_warm:
        front.nodes.drop_idle()
        time.sleep(0.3)  # the load balancer reads the closes (it discards closed ones)
        front.pool_warm = False


@pytest.mark.parametrize(
    ("connection", "behaviour", "method", "body"),
    CASES,
    ids=["-".join(case) for case in CASES],
)
def test_how_many_nodes_see_the_request(
    front: Front, connection: str, behaviour: str, method: str, body: str
) -> None:
    case = f"{connection}-{behaviour}-{method}-{body}"
    if connection == "new":
        _empty_pool(front)
    with front.connect() as sock:
        if connection == "reused":
            _warm_every_node(front, sock)
        request = f"{method} /t/{behaviour}/{case} HTTP/1.1\r\nHost: {HOSTNAME}\r\n"
        sock.sendall(request.encode() + BODIES[body])
        status, _, _ = read_response(sock, timeout=10, head_only=method == "HEAD")
    assert status == 502
    seen = front.nodes.seen.get(case, [])
    # The premise: the first try ran on the kind of node connection the case names.
    assert seen and (seen[0][1] > 0) == (connection == "reused"), seen
    assert len(seen) == _expected(method, body, connection, behaviour), seen
    assert len({node for node, _ in seen}) == len(seen), seen  # never the same node twice


def test_an_upgrade_is_retried_like_its_get_and_its_early_bytes_stay_held(front: Front) -> None:
    """A websocket upgrade is a GET without a body: repeatable; the bytes the client sent
    after it are held until a 101 arrives, so no node that closed got them."""
    with front.connect() as sock:
        _warm_every_node(front, sock)
        sock.sendall(
            f"GET /t/close/upgrade HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        status, _, _ = read_response(sock, timeout=10)
    assert status == 502
    assert len(front.nodes.seen["upgrade"]) == len(NODE_HOSTS)


def test_expect_100_continue_is_never_repeated(front: Front) -> None:
    """A PUT waiting for `100 Continue` has a body the load balancer does not hold: one node."""
    with front.connect() as sock:
        _warm_every_node(front, sock)
        sock.sendall(
            f"PUT /t/reset/expect HTTP/1.1\r\nHost: {HOSTNAME}\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        status, _, _ = read_response(sock, timeout=10)
    assert status == 502
    assert len(front.nodes.seen["expect"]) == 1
