"""The admin endpoint of a layer 7 load balancer, over real sockets: byte counters that count
every byte on each side (heads too), when each node's state changed and how often, and a
redirect frontend that lists no nodes it never sends to."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from helpers import (
    BACKEND_HOSTS,
    HOSTNAME,
    LB_HOST,
    Backend,
    CertFiles,
    LbProcess,
    LoopThread,
    _read_request,
    free_port,
    start_backend,
    tls_connect,
)

LbFactory = Callable[..., LbProcess]
SENT: dict[str, int] = {}  # bytes each test node wrote, by address


async def counting_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers every request with a short body; counts what it received and what it wrote."""
    while True:
        request = await _read_request(reader, backend)  # adds to backend.received
        if request is None:
            return
        line, _headers, body = request
        if line.startswith("GET /healthz"):
            status = b"200 OK" if backend.healthy else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n" % status)
            await writer.drain()
            continue
        payload = b"node %s got %d body bytes" % (backend.address.encode(), len(body))
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: %s\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (b"p" * 300, len(payload), payload)
        )
        SENT[backend.address] = SENT.get(backend.address, 0) + len(response)
        writer.write(response)
        await writer.drain()


def exchange(sock: socket.socket, request: bytes) -> int:
    """Send one request, read its whole response (Content-Length); bytes received."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before a response head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a body"
        body += chunk
    return len(head) + 4 + len(body)


def status_document(admin: tuple[str, int]) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/status", timeout=5) as reply:
        document: dict[str, Any] = json.loads(reply.read())
    return document


def frontend(document: dict[str, Any], port: int) -> dict[str, Any]:
    return next(f for f in document["frontends"] if f["address"].endswith(f":{port}"))


def test_byte_counters_count_every_byte_each_way(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    nodes = [start_backend(loop_thread, host, counting_handler) for host in BACKEND_HOSTS[:2]]
    admin = (LB_HOST, free_port())
    lb = lb_factory(
        [n.address for n in nodes],
        "--admin", f"{admin[0]}:{admin[1]}", "--health", "tcp", "--interval", "200ms",
        redirect=True,
    )  # fmt: skip
    sent = received = 0
    get = f"GET /v3/settings HTTP/1.1\r\nHost: {HOSTNAME}\r\nUser-Agent: counters\r\n\r\n"
    # Keep-alive GETs (the callback path once a node connection is pooled) ...
    with tls_connect(lb, cert.ca) as sock:
        for _ in range(20):
            received += exchange(sock, get.encode())
            sent += len(get)
        # ... and requests with bodies (the task path), on the same connection.
        for size in (1, 700, 5000):
            post = (
                f"POST /v3/import HTTP/1.1\r\nHost: {HOSTNAME}\r\nContent-Length: {size}\r\n\r\n"
            ).encode() + b"x" * size
            received += exchange(sock, post)
            sent += len(post)
    # Fresh connections, closed by the client's request.
    for _ in range(5):
        with tls_connect(lb, cert.ca) as sock:
            close = get.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").encode()
            received += exchange(sock, close)
            sent += len(close)
    # The redirect port answers itself.
    assert lb.redirect_port is not None
    redirect_sent = redirect_received = 0
    with socket.create_connection((LB_HOST, lb.redirect_port), timeout=5) as plain:
        for _ in range(3):
            redirect_received += exchange(plain, get.encode())
            redirect_sent += len(get)

    # Counters are added as each exchange ends, a moment after the client has its answer.
    deadline = time.monotonic() + 5
    while True:
        document = status_document(admin)
        https, port80 = frontend(document, lb.port), frontend(document, lb.redirect_port)
        to_nodes = sum(b["bytes_to_backend"] for b in https["backends"])
        from_nodes = sum(b["bytes_from_backend"] for b in https["backends"])
        counted = (
            https["bytes_from_clients"],
            https["bytes_to_clients"],
            to_nodes,
            from_nodes,
            port80["bytes_from_clients"],
            port80["bytes_to_clients"],
        )
        wanted = (
            sent,
            received,
            sum(len(n.received) for n in nodes),
            sum(SENT[n.address] for n in nodes),
            redirect_sent,
            redirect_received,
        )
        if counted == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # It counted request bodies only: 28 requests gave 5701 bytes "to backend" and
    # bytes_from_clients 5701, the heads (and the redirect port's requests) not at all.
    assert counted == wanted
    assert to_nodes > sent - 5701  # the heads went to the nodes, rewritten (X-Forwarded-*)
    # The redirect frontend sends nobody to a node: it lists none.
    assert port80["backends"] == []
    assert all(b["total"] > 0 for b in https["backends"])


def test_state_changes_have_a_time_an_age_and_a_count(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    nodes = [start_backend(loop_thread, host, counting_handler) for host in BACKEND_HOSTS[:2]]
    admin = (LB_HOST, free_port())
    lb_factory(
        [n.address for n in nodes],
        "--admin", f"{admin[0]}:{admin[1]}", "--health", "http:/healthz",
        "--interval", "100ms", "--rise", "1", "--fall", "1",
    )  # fmt: skip
    started = time.time()

    def backend(name: str) -> dict[str, Any]:
        document = status_document(admin)
        return next(b for f in document["frontends"] for b in f["backends"] if b["name"] == name)

    flapper = nodes[1]

    def wait_for(state: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen = backend(flapper.address)
            if seen["state"] == state:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"{flapper.address} never {state}: {seen}")

    # Up, and checked: the reason says what confirmed it, not "assumed".
    deadline = time.monotonic() + 5
    steady = backend(nodes[0].address)
    while steady["last_check"] == "" and time.monotonic() < deadline:
        time.sleep(0.05)
        steady = backend(nodes[0].address)
    steady = backend(nodes[0].address)
    assert "assumed up" not in steady["reason"], steady
    assert steady["reason"].startswith("check passed"), steady
    assert steady["changes"] == 0 and steady["went_down"] == 0

    for _ in range(2):  # flap twice
        flapper.healthy = False
        wait_for("down")
        flapper.healthy = True
        wait_for("up")
    seen = backend(flapper.address)
    assert seen["changes"] == 4 and seen["went_down"] == 2, seen
    assert [c["to"] for c in seen["recent_changes"]] == ["up", "down", "up", "down"]
    since = datetime.strptime(seen["since"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert started - 1 <= since.timestamp() <= time.time() + 1
    assert 0 <= seen["since_age_s"] < 5
    assert seen["recent_changes"][0]["at"] == seen["since"]

    with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/", timeout=5) as reply:
        page = reply.read().decode()
    assert "Recent state changes" in page and f"{flapper.address}: down → up" in page
    with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert "rke2ha_lb_backend_state_changes_total" in metrics
