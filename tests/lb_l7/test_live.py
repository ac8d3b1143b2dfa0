"""The layer 7 front as a real process, over real sockets and real TLS on 127.0.50.0/24."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import (
    BACKEND_HOSTS,
    HOSTNAME,
    LB_HOST,
    Backend,
    CertFiles,
    LbProcess,
    LoopThread,
    bulk_handler,
    client_context,
    close_second_handler,
    closed_after,
    echo_handler,
    free_port,
    make_cert,
    read_response,
    recorder_handler,
    silent_handler,
    slow_handler,
    start_backend,
    start_lb,
    start_websocket_backend,
    stop_backend,
    tls_connect,
)
from test_http_front import AMBIGUOUS

LbFactory = Callable[..., LbProcess]


def get(
    lb: LbProcess, cert: CertFiles, path: str, *headers: str
) -> tuple[int, dict[str, str], bytes]:
    with tls_connect(lb, cert.ca) as sock:
        extra = "".join(f"{h}\r\n" for h in headers)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOSTNAME}\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        return read_response(sock)


def test_headers_arrive_at_the_node_as_listed(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address])
    status, _headers, body = get(
        lb,
        cert,
        "/v3/settings?x=1",
        "X-Forwarded-For: 203.0.113.9",
        "X-Forwarded-Proto: http",
        "Connection: close, X-Hop",
        "X-Hop: must-not-pass",
        "Keep-Alive: timeout=99",
        "TE: trailers",
    )
    assert status == 200
    seen = json.loads(body)
    names = {k.lower(): v for k, v in seen["headers"]}
    assert seen["line"] == "GET /v3/settings?x=1 HTTP/1.1"
    assert names["host"] == HOSTNAME
    assert names["x-forwarded-proto"] == "https"
    assert names["x-forwarded-port"] == str(lb.port)
    assert names["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert names["x-forwarded-host"] == HOSTNAME
    for hop in ("x-hop", "keep-alive", "te", "connection"):
        assert hop not in names, hop
    # the access log has one JSON line for it, with the node and the upstream time
    time.sleep(0.2)
    entry = lb.access()[-1]
    assert entry["status"] == 200 and entry["backend"] == node.address
    assert entry["path"] == "/v3/settings" and entry["upstream_ms"] is not None


def test_keep_alive_and_chunked_bodies_both_ways(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address])
    with tls_connect(lb, cert.ca) as sock:
        for _ in range(3):
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in [b"a" * 1000, b"b" * 5000])
            sock.sendall(
                f"POST /up HTTP/1.1\r\nHost: {HOSTNAME}\r\n".encode()
                + b"Transfer-Encoding: chunked\r\n\r\n"
                + body
                + b"0\r\n\r\n"
            )
            status, _headers, reply = read_response(sock)
            assert status == 200 and json.loads(reply)["body"] == 6000
    # one keep-alive connection to the node served all three (health checks aside)
    assert len(node.requests) == 3 and len({r["conn"] for r in node.requests}) == 1


def test_websocket_through_the_lb_survives_sighup(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles, tmp_path: Path
) -> None:
    from websockets.asyncio.client import connect

    node = start_websocket_backend(loop_thread, BACKEND_HOSTS[1])
    lb = lb_factory([node.address])
    new_cert = make_cert(tmp_path / "renewed", [HOSTNAME], tag="renewed")

    async def talk() -> list[str]:
        replies = []
        context = ssl.create_default_context(cafile=str(cert.ca))
        async with connect(
            f"wss://{HOSTNAME}:{lb.port}/v3/subscribe",
            ssl=context,
            host=LB_HOST,
            port=lb.port,
            server_hostname=HOSTNAME,
            open_timeout=5,
        ) as ws:
            await ws.send("before")
            replies.append(str(await asyncio.wait_for(ws.recv(), 5)))
            # Swap the certificate files, reload: the open websocket must stay up.
            cert.cert.write_bytes(new_cert.cert.read_bytes())
            cert.key.write_bytes(new_cert.key.read_bytes())
            lb.signal(signal.SIGHUP)
            for _ in range(200):  # the reload is done before the socket is used again
                if "certificate reloaded" in lb.stderr():
                    break
                await asyncio.sleep(0.05)
            assert "certificate reloaded" in lb.stderr()
            for i in range(3):
                await ws.send(f"after-{i}")
                replies.append(str(await asyncio.wait_for(ws.recv(), 5)))
        return replies

    assert asyncio.run(talk()) == ["echo:before", "echo:after-0", "echo:after-1", "echo:after-2"]
    assert wait_for(lambda: "certificate reloaded" in lb.stderr())
    # New connections get the new certificate (verified against the new CA only).
    raw = socket.create_connection((LB_HOST, lb.port), timeout=5)
    context = ssl.create_default_context(cafile=str(new_cert.ca))
    with context.wrap_socket(raw, server_hostname=HOSTNAME) as sock:
        peer = sock.getpeercert()
        assert peer is not None and int(str(peer["serialNumber"]), 16) == new_cert.serial
        assert sock.selected_alpn_protocol() in (None, "http/1.1")
    upgrade_headers = {k.lower(): v for k, v in node.requests[0]["headers"].items()}
    assert upgrade_headers["x-forwarded-proto"] == "https"


def test_status_of_two_workers_counts_every_request(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    """`--workers 2` at layer 7: the supervisor's /status sums both workers' counters."""
    nodes = [start_backend(loop_thread, host, echo_handler) for host in BACKEND_HOSTS]
    admin = free_port()
    lb = lb_factory([n.address for n in nodes], "--workers", "2", "--admin", f"{LB_HOST}:{admin}")
    assert wait_for(lambda: lb.stderr().count("listening on") >= 2)  # both workers
    requests = 24  # each curl is a new connection: the kernel spreads them over the workers
    for i in range(requests):
        curl = subprocess.run(
            [
                *("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"),
                *("--cacert", str(cert.ca), "--resolve", f"{HOSTNAME}:{lb.port}:{LB_HOST}"),
                f"https://{HOSTNAME}:{lb.port}/n{i}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert curl.stdout == "200", curl.stderr
    deadline = time.monotonic() + 3  # workers publish their counters every 50 ms
    while True:
        with urllib.request.urlopen(f"http://{LB_HOST}:{admin}/status", timeout=5) as reply:
            front = json.loads(reply.read())["frontends"][0]
        if front["total"] >= requests or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert front["total"] == requests
    assert sum(b["total"] for b in front["backends"]) == requests
    assert sum(len(n.requests) for n in nodes) == requests  # the nodes agree


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_reload_keeps_serving_the_old_certificate(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles, workers: int
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address], "--workers", str(workers))
    if workers > 1:  # every worker has loaded the certificate
        assert wait_for(lambda: f"{workers} workers listening" in lb.stderr())
    cert.key.write_text("not a key\n")
    lb.signal(signal.SIGHUP)
    # one process keeps its certificate; a supervisor keeps its workers
    failed = "certificate reload failed" if workers == 1 else "reload failed, keeping"
    assert wait_for(lambda: failed in lb.stderr())
    assert "not a PEM private key" in lb.stderr()
    for _ in range(4):
        assert get(lb, cert, "/")[0] == 200
    assert lb.proc.poll() is None


def test_redirect_keeps_path_and_query(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address], "--redirect-code", "301", "--acme-passthrough", redirect=True)
    assert lb.redirect_port is not None
    with socket.create_connection((LB_HOST, lb.redirect_port), timeout=5) as sock:
        sock.sendall(b"GET /dashboard/c/local?a=1&b=%2F HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 301
        assert headers["location"] == f"https://{HOSTNAME}:{lb.port}/dashboard/c/local?a=1&b=%2F"
        # keep-alive on the redirect port; ACME challenges go to the nodes
        sock.sendall(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 200
        seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert seen["x-forwarded-proto"] == "http"


def test_cookie_affinity_pins_and_fails_over(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    nodes = [start_backend(loop_thread, host, echo_handler) for host in BACKEND_HOSTS]
    lb = lb_factory([n.address for n in nodes], "--affinity", "cookie")
    status, headers, body = get(lb, cert, "/")
    assert status == 200
    first = json.loads(body)["backend"]
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.startswith("rke2ha_affinity=") and "127.0.50" not in cookie
    for _ in range(6):
        status, headers, body = get(lb, cert, "/", f"Cookie: theme=dark; {cookie}")
        reply = json.loads(body)
        assert reply["backend"] == first
        assert "set-cookie" not in headers  # already pinned: nothing to change
        seen = dict(reply["headers"])
        assert seen.get("Cookie") == "theme=dark"  # our cookie never reaches Rancher
    # A forged cookie naming a node picks nothing; the client is pinned afresh.
    status, headers, _ = get(lb, cert, "/", f"Cookie: rke2ha_affinity={nodes[2].address}")
    assert status == 200 and "set-cookie" in headers
    # The pinned node dies: the same cookie lands on a live node, with a new pin, no error.
    pinned = next(n for n in nodes if n.address == first)
    stop_backend(loop_thread, pinned)
    status, headers, body = get(lb, cert, "/", f"Cookie: {cookie}")
    assert status == 200
    moved_to = json.loads(body)["backend"]
    assert moved_to != first
    new_cookie = headers["set-cookie"].split(";")[0]
    assert new_cookie != cookie
    status, _, body = get(lb, cert, "/", f"Cookie: {new_cookie}")
    assert json.loads(body)["backend"] == moved_to


@pytest.fixture(scope="module")
def smuggling_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LbProcess, CertFiles, Backend]]:
    """One LB in front of a node that records every byte, shared by the cases below: each
    case checks the record right after it, so a leak is pinned to the case that caused it."""
    folder = tmp_path_factory.mktemp("smuggling")
    cert = make_cert(folder / "tls", [HOSTNAME])
    loop = LoopThread()
    node = start_backend(loop, BACKEND_HOSTS[2], recorder_handler)
    lb = start_lb(folder, cert, [node.address])
    yield lb, cert, node
    lb.stop()
    loop.stop()


@pytest.mark.parametrize(("name", "raw", "status"), AMBIGUOUS, ids=[c[0] for c in AMBIGUOUS])
def test_ambiguous_request_gets_400_and_the_node_sees_nothing(
    smuggling_target: tuple[LbProcess, CertFiles, Backend], name: str, raw: bytes, status: int
) -> None:
    lb, cert, node = smuggling_target
    with tls_connect(lb, cert.ca) as sock:
        sock.sendall(raw)
        got, headers, _ = read_response(sock)
        assert got == status
        assert headers.get("connection") == "close"
        assert closed_after(sock)
    time.sleep(0.05)
    assert bytes(node.received) == b"", bytes(node.received)


def test_slow_clients_do_not_stop_a_normal_one(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address], "--header-timeout", "3s")
    context = ssl.create_default_context(cafile=str(cert.ca))

    async def scenario() -> tuple[float, list[int]]:
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection(
                LB_HOST, lb.port, ssl=context, server_hostname=HOSTNAME
            )
            writer.write(b"GET / HTTP/1.1\r\nHost: ")  # ... and the rest never comes
            slow.append((reader, writer))
        for _, writer in slow:
            writer.write(b"r")  # a byte now and then keeps a naive server waiting
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(
            LB_HOST, lb.port, ssl=context, server_hostname=HOSTNAME
        )
        writer.write(
            f"GET /fast HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode()
        )
        reply = await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - started
        assert reply.startswith(b"HTTP/1.1 200")
        writer.close()
        # the slow ones are cut off with 408 at the header deadline
        statuses = []
        for slow_reader, _ in slow[:20]:
            data = await asyncio.wait_for(slow_reader.read(), 10)
            statuses.append(int(data.split()[1]) if data else 0)
        for _, slow_writer in slow:
            slow_writer.close()
        return elapsed, statuses

    elapsed, statuses = asyncio.run(scenario())
    assert elapsed < 1.0
    assert statuses == [408] * 20


def test_502_when_no_node_answers_and_504_when_it_hangs(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    dead = socket.socket()
    dead.bind((BACKEND_HOSTS[1], 0))  # bound, not listening: connects are refused
    dead_address = f"{BACKEND_HOSTS[1]}:{dead.getsockname()[1]}"
    lb = lb_factory([dead_address])
    status, _headers, body = get(lb, cert, "/")
    assert status == 502 and b"No Rancher server node" in body
    time.sleep(0.2)
    assert "502 for GET /" in lb.stderr() and "refused" in lb.stderr().lower()
    assert lb.access()[-1]["reason"]
    dead.close()

    hung = start_backend(loop_thread, BACKEND_HOSTS[2], silent_handler)
    lb = lb_factory([hung.address], "--http-timeout", "1s")
    started = time.monotonic()
    status, _, body = get(lb, cert, "/slow")
    assert status == 504 and 0.9 < time.monotonic() - started < 5
    time.sleep(0.2)
    assert "504 for GET /slow" in lb.stderr() and "no response in 1s" in lb.stderr()


def test_idempotent_request_retried_on_stale_keep_alive_but_not_a_post(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    flaky = start_backend(loop_thread, BACKEND_HOSTS[0], close_second_handler)
    good = start_backend(loop_thread, BACKEND_HOSTS[1], echo_handler)
    lb = lb_factory([flaky.address, good.address], "--balance", "roundrobin")
    # Warm a keep-alive connection to each node (round robin), then ask again: the reused
    # connection to the flaky node dies without a byte, and the GET goes to the other node.
    for _ in range(2):
        assert get(lb, cert, "/warm")[0] == 200
    statuses = [get(lb, cert, "/again")[0] for _ in range(2)]
    assert statuses == [200, 200]
    time.sleep(0.2)
    assert any(e.get("retries") for e in lb.access())
    # A POST with a body is never repeated: the same race ends in 502.
    flaky2 = start_backend(loop_thread, BACKEND_HOSTS[2], close_second_handler)
    lb2 = lb_factory([flaky2.address])
    assert get(lb2, cert, "/warm")[0] == 200
    with tls_connect(lb2, cert.ca) as sock:
        sock.sendall(
            f"POST /once HTTP/1.1\r\nHost: {HOSTNAME}\r\nContent-Length: 4\r\n\r\nbody".encode()
        )
        status, _, _ = read_response(sock)
    assert status == 502
    assert len(flaky2.requests) == 1  # only the warm-up request was answered


def test_header_deadline_gives_408(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], recorder_handler)
    lb = lb_factory([node.address], "--header-timeout", "1s")
    with tls_connect(lb, cert.ca) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        status, _, _ = read_response(sock, timeout=5)
    assert status == 408
    assert node.received == b""


def test_active_checks_take_a_node_out_and_back(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    sick = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    well = start_backend(loop_thread, BACKEND_HOSTS[1], echo_handler)
    sick.healthy = False
    lb = lb_factory(
        [sick.address, well.address],
        *("--health", "http:/healthz", "--interval", "200ms", "--rise", "1", "--fall", "1"),
    )
    assert wait_for(lambda: f"({sick.address}): up -> down" in lb.stderr())
    served = {json.loads(get(lb, cert, "/")[2])["backend"] for _ in range(6)}
    assert served == {well.address}
    sick.healthy = True
    assert wait_for(lambda: f"({sick.address}): down -> up" in lb.stderr())
    served = {json.loads(get(lb, cert, "/")[2])["backend"] for _ in range(8)}
    assert served == {sick.address, well.address}
    # every node failing its check: 502 with the reason in the log, no connect attempted
    sick.healthy = well.healthy = False
    assert wait_for(lambda: lb.stderr().count("-> down") >= 3)
    assert get(lb, cert, "/")[0] == 502
    assert wait_for(lambda: lb.access()[-1].get("reason") == "no healthy node")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_requests_in_flight_and_closes_idle_ones(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], slow_handler)
    lb = lb_factory([node.address])
    idle = tls_connect(lb, cert.ca)
    idle.sendall(f"GET /first HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
    assert read_response(idle)[0] == 200  # now an idle keep-alive connection
    busy = tls_connect(lb, cert.ca)
    busy.sendall(f"GET /slow HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
    time.sleep(0.3)
    started = time.monotonic()
    lb.signal(signal.SIGTERM)
    assert closed_after(idle, timeout=0.8)  # the idle one is closed at once
    status, headers, body = read_response(busy)
    assert (status, body) == (200, b"slow") and headers.get("connection") == "close"
    assert lb.proc.wait(10) == 0 and time.monotonic() - started < 5
    idle.close()
    busy.close()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_bodies_stream_both_ways_without_buffering(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], bulk_handler)
    lb = lb_factory([node.address])
    assert get(lb, cert, "/1")[0] == 200
    before = _peak_rss_mib(lb.proc.pid)
    size = 96 * 1024 * 1024
    with tls_connect(lb, cert.ca, timeout=30) as sock:
        sock.sendall(
            f"POST /up HTTP/1.1\r\nHost: {HOSTNAME}\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        block = b"u" * (1 << 20)
        for _ in range(size // len(block)):
            sock.sendall(block)
        status, _, body = read_response(sock, timeout=30)
        assert status == 200 and int(body) == size
        sock.sendall(f"GET /{size} HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        sock.settimeout(30)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, rest = received.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        total = len(rest)
        while not rest.endswith(b"0\r\n\r\n"):
            rest = sock.recv(1 << 20)
            assert rest
            total += len(rest)
        assert total > size  # the body plus the chunk framing arrived
    grown = _peak_rss_mib(lb.proc.pid) - before
    assert grown < 40, f"the load balancer grew {grown:.0f} MiB for 96 MiB each way"


def test_websocket_tunnel_has_its_own_idle_timeout(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    node = start_websocket_backend(loop_thread, BACKEND_HOSTS[1])
    lb = lb_factory([node.address], "--http-timeout", "1s")

    async def talk() -> tuple[str, float]:
        context = ssl.create_default_context(cafile=str(cert.ca))
        async with connect(
            f"wss://{HOSTNAME}:{lb.port}/",
            ssl=context,
            host=LB_HOST,
            port=lb.port,
            server_hostname=HOSTNAME,
            ping_interval=None,
        ) as ws:
            for i in range(4):  # activity keeps it open past the timeout
                await ws.send(f"m{i}")
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.sleep(0.4)
            await ws.send("last")
            reply = str(await asyncio.wait_for(ws.recv(), 5))
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):  # the LB cuts the idle tunnel
                await asyncio.wait_for(ws.recv(), 5)
            return reply, time.monotonic() - started

    reply, idle = asyncio.run(talk())
    assert reply == "echo:last"
    assert 0.8 < idle < 3


def test_workers_share_the_port_and_the_affinity_secret(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    nodes = [start_backend(loop_thread, host, echo_handler) for host in BACKEND_HOSTS]
    lb = lb_factory([n.address for n in nodes], "--workers", "2", "--affinity", "cookie")
    time.sleep(0.5)
    children = [
        child
        for child in Path(f"/proc/{lb.proc.pid}/task/{lb.proc.pid}/children").read_text().split()
        if b"rke2ha.lb.workers" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    assert len(children) == 2  # the workers (beside Python's shared-memory tracker)
    status, headers, body = get(lb, cert, "/")
    pinned, cookie = json.loads(body)["backend"], headers["set-cookie"].split(";")[0]
    # new connections land on either worker; every one honours the same cookie
    for _ in range(12):
        status, headers, body = get(lb, cert, "/", f"Cookie: {cookie}")
        assert status == 200 and json.loads(body)["backend"] == pinned
    lb.signal(signal.SIGTERM)
    assert lb.proc.wait(10) == 0
    for child in children:
        assert (
            not Path(f"/proc/{child}").exists()
            or "zombie" in Path(f"/proc/{child}/status").read_text()
        )


def test_head_expect_continue_and_http10(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address])
    with tls_connect(lb, cert.ca) as sock:
        # HEAD: the head of the response only, and the connection still serves
        sock.sendall(f"HEAD /h HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        status, headers, body = read_response(sock, head_only=True)
        assert status == 200 and int(headers["content-length"]) > 0 and body == b""
        # Expect: 100-continue: the node's interim answer reaches the client before the body
        sock.sendall(
            f"POST /c HTTP/1.1\r\nHost: {HOSTNAME}\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        sock.settimeout(5)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["body"] == 5
    with tls_connect(lb, cert.ca) as sock:
        # HTTP/1.0 without keep-alive: one answer, then the load balancer closes
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 200 and headers.get("connection") == "close"
        assert closed_after(sock)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_policy_old_versions_refused_alpn_http11(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cert.ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        # The client offered TLS 1.0/1.1 and waited: the server answers with an alert or
        # (uvloop closes without flushing it) with EOF. Either way no session.
        pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNEXPECTED_EOF"),
        socket.create_connection((LB_HOST, lb.port), timeout=5) as raw,
        old.wrap_socket(raw, server_hostname=HOSTNAME),
    ):
        pass
    modern = ssl.create_default_context(cafile=str(cert.ca))
    modern.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((LB_HOST, lb.port), timeout=5) as raw,
        modern.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"  # never h2: the front is HTTP/1.1
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    tls12 = ssl.create_default_context(cafile=str(cert.ca))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection((LB_HOST, lb.port), timeout=5) as raw,
        tls12.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        cipher = tls.cipher()
        assert tls.version() == "TLSv1.2" and cipher is not None
        assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]
        assert cipher[0].startswith("ECDHE")


def test_max_connections_leaves_new_clients_in_the_backlog_until_one_closes(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    node = start_backend(loop_thread, BACKEND_HOSTS[0], recorder_handler)
    lb = lb_factory([node.address], "--max-connections", "2")
    first = tls_connect(lb, cert.ca)
    second = tls_connect(lb, cert.ca)
    deadline = time.monotonic() + 5
    while "max_connections" not in lb.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "max_connections" in lb.stderr()
    # The kernel completes the TCP handshake from the backlog, but nobody answers TLS.
    raw = socket.create_connection((LB_HOST, lb.port), timeout=5)
    third = client_context(cert.ca).wrap_socket(
        raw, server_hostname=HOSTNAME, do_handshake_on_connect=False
    )
    third.settimeout(1.0)
    with pytest.raises(TimeoutError):
        third.do_handshake()
    first.close()  # below the limit again: accepting resumes and the waiting client is served
    third.settimeout(5)
    third.do_handshake()
    third.sendall(f"GET /third HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
    assert read_response(third)[0] == 200
    second.sendall(f"GET /second HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
    assert read_response(second)[0] == 200
    third.close()
    second.close()


def test_sigterm_closes_an_idle_connection_served_by_callbacks_at_once(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    """A connection whose requests all took the callback path has no task: a drain must still
    close it at once, not wait out drain_timeout for the client's goodbye."""
    node = start_backend(loop_thread, BACKEND_HOSTS[0], recorder_handler)
    lb = lb_factory([node.address], "--drain-timeout", "20s")
    with tls_connect(lb, cert.ca) as warm:  # leaves an idle pooled connection to the node
        warm.sendall(f"GET /warm HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        assert read_response(warm)[0] == 200
    idle = tls_connect(lb, cert.ca)
    idle.sendall(f"GET /idle HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
    assert read_response(idle)[0] == 200
    started = time.monotonic()
    lb.signal(signal.SIGTERM)
    assert lb.proc.wait(10) == 0 and time.monotonic() - started < 5
    idle.close()


def test_max_connections_holds_for_a_burst_of_handshakes(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    """Connections count from their accept: a burst of clients that all start TLS at once
    cannot all become sessions."""
    node = start_backend(loop_thread, BACKEND_HOSTS[0], recorder_handler)
    lb = lb_factory([node.address], "--max-connections", "2")
    raws = [socket.create_connection((LB_HOST, lb.port), timeout=5) for _ in range(8)]
    time.sleep(0.3)  # the whole burst is in the kernel's queue before anyone speaks TLS
    context = client_context(cert.ca)
    held: list[ssl.SSLSocket] = []  # served clients stay connected: they keep their places

    def served(raw: socket.socket) -> bool:
        sock = context.wrap_socket(raw, server_hostname=HOSTNAME, do_handshake_on_connect=False)
        held.append(sock)
        sock.settimeout(1.5)
        try:
            sock.do_handshake()
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
            return read_response(sock, timeout=1.5)[0] == 200
        except (OSError, ssl.SSLError):
            return False  # waiting in the backlog, or closed as beyond the limit

    with ThreadPoolExecutor(len(raws)) as pool:
        results = list(pool.map(served, raws))
    assert 1 <= sum(results) <= 2, results
    for sock in held:
        sock.close()


async def _sized_handler(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """GET /N: N bytes with a Content-Length, written as the LB takes them; then records
    {"done": N} (so a test can tell whether the LB read a whole body)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        size = int(head.split(b" ", 2)[1].strip(b"/"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"y" * (1 << 16)
        left = size
        while left:
            part = block[: min(left, len(block))]
            writer.write(part)
            left -= len(part)
            await writer.drain()
        backend.requests.append({"done": size})


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("first", [200_000, 3_000_000])
def test_a_client_that_stops_reading_stops_the_node_too(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles, first: int
) -> None:
    """A client that reads nothing: the node is not read into memory either. With a small
    first response, the second exchange starts while the client's buffer is already full
    (no new pause_writing will come); with a large one, the first exchange itself pauses."""
    node = start_backend(loop_thread, BACKEND_HOSTS[0], _sized_handler)
    lb = lb_factory([node.address])
    warm = tls_connect(lb, cert.ca)  # leaves an idle node connection: the callback path
    warm.sendall(f"GET /2 HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode())
    assert read_response(warm)[0] == 200
    warm.close()
    time.sleep(0.3)
    before = _rss_kib(lb.proc.pid)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it reads nothing
    raw.settimeout(5)
    raw.connect((LB_HOST, lb.port))
    client = client_context(cert.ca).wrap_socket(raw, server_hostname=HOSTNAME)
    try:
        client.sendall(f"GET /{first} HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        time.sleep(1.0)
        client.sendall(f"GET /50000000 HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        time.sleep(3.0)  # the node would have written 50 MB to an LB that kept reading
        assert {"done": 50000000} not in node.requests
        assert _rss_kib(lb.proc.pid) - before < 30 * 1024
    finally:
        client.close()


def test_accept_failure_pauses_then_resumes(
    loop_thread: LoopThread, lb_factory: LbFactory, cert: CertFiles
) -> None:
    """Out of descriptors (EMFILE on accept): the frontend says so, stops accepting for a
    moment instead of spinning on a listener that stays readable, and accepts again."""
    node = start_backend(loop_thread, BACKEND_HOSTS[0], echo_handler)
    lb = lb_factory([node.address])
    pid = lb.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{pid}/fd"))
    clients: list[socket.socket] = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 2, hard))
        for _ in range(5):  # TCP connects complete in the kernel; accepts run out at 2
            clients.append(socket.create_connection((LB_HOST, lb.port), timeout=5))
        assert wait_for(lambda: "cannot accept" in lb.stderr(), 3)
        assert "Too many open files" in lb.stderr()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        started = time.monotonic()
        fresh = tls_connect(lb, cert.ca)  # a handshake needs an accept: accepting again
        fresh.sendall(f"GET /again HTTP/1.1\r\nHost: {HOSTNAME}\r\n\r\n".encode())
        assert read_response(fresh)[0] == 200
        assert time.monotonic() - started < 5
        fresh.close()
        assert lb.stderr().count("cannot accept") <= 3  # paused, not spinning
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for client in clients:
            client.close()
