"""The relay in-process over real socket pairs: splice, copy and adaptive; half-close; pool."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from rke2ha.lb.poller import Readiness, poller_for
from rke2ha.lb.relay import SPLICE_AVAILABLE, PipePool, Relay

PAYLOAD = os.urandom(3 * 1024 * 1024)


async def _drain(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> bytes:
    chunks = []
    while data := await loop.sock_recv(sock, 1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def _readiness(kind: str, loop: asyncio.AbstractEventLoop) -> Readiness:
    """The frontend's own epoll (what `lb serve` uses), or the event loop's readers."""
    return poller_for(loop) if kind == "poller" else loop


@pytest.mark.parametrize("readiness", ["poller", "loop"])
@pytest.mark.parametrize("mode", ["splice", "copy", "auto"])
def test_relay_moves_bytes_both_ways_and_passes_half_close(mode: str, readiness: str) -> None:
    if mode != "copy" and not SPLICE_AVAILABLE:
        pytest.skip("splice is Linux only")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        client_app, client_lb = socket.socketpair()
        backend_lb, backend_app = socket.socketpair()
        for sock in (client_app, client_lb, backend_lb, backend_app):
            sock.setblocking(False)
        pipes = PipePool(4) if mode != "copy" else None
        closed: list[str] = []
        relay = Relay(
            _readiness(readiness, loop),
            client_lb,
            backend_lb,
            pipes,
            lambda r: closed.append(r.outcome),
            adaptive=mode == "auto",
        )
        relay.start()
        # client -> backend, then the client half-closes; backend answers afterwards.
        send = loop.create_task(loop.sock_sendall(client_app, PAYLOAD))
        received = await asyncio.wait_for(_read_exact(backend_app, len(PAYLOAD), loop), 10)
        await send
        client_app.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(loop.sock_recv(backend_app, 10), 5) == b""  # FIN passed on

        async def answer_back() -> None:  # the other direction still flows after the FIN
            await loop.sock_sendall(backend_app, PAYLOAD[::-1])
            backend_app.shutdown(socket.SHUT_WR)

        answering = loop.create_task(answer_back())
        answer = await asyncio.wait_for(_drain(client_app, loop), 10)
        await answering
        assert received == PAYLOAD and answer == PAYLOAD[::-1]
        await asyncio.sleep(0.05)
        assert closed == ["closed"] and relay.bytes_up == relay.bytes_down == len(PAYLOAD)
        if pipes is not None:
            assert pipes.in_use == 0  # pipes go back to the pool once bytes stopped moving
            assert (pipes.created > 0) == (mode in ("splice", "auto"))
            pipes.close()
        client_app.close()
        backend_app.close()

    asyncio.run(scenario())


async def _read_exact(sock: socket.socket, size: int, loop: asyncio.AbstractEventLoop) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, 1 << 20)
        assert chunk, "EOF too early"
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("readiness", ["poller", "loop"])
def test_reset_closes_both_sides(readiness: str) -> None:
    async def scenario() -> tuple[list[str], bytes]:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.30.20", 0)) as listener:
            address = listener.getsockname()
            client_app = socket.create_connection(address)
            client_lb, _ = listener.accept()
            backend_lb = socket.create_connection(address)
            backend_app, _ = listener.accept()
        for sock in (client_lb, backend_lb, client_app):
            sock.setblocking(False)
        closed: list[str] = []
        Relay(
            _readiness(readiness, loop),
            client_lb,
            backend_lb,
            None,
            lambda r: closed.append(r.outcome),
        ).start()
        # SO_LINGER 0: close() sends RST, like a crashed node
        backend_app.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        backend_app.close()
        tail = await asyncio.wait_for(_drain(client_app, loop), 5)
        client_app.close()
        return closed, tail

    closed, tail = asyncio.run(scenario())
    assert closed == ["backend-reset"] and tail == b""


def test_pipe_pool_is_bounded() -> None:
    pool = PipePool(2)
    first, second = pool.acquire(), pool.acquire()
    assert first and second and pool.acquire() is None and pool.exhausted == 1
    pool.release(first)
    assert pool.acquire() == first
    pool.discard(second)
    assert pool.created == 1
    pool.release(first)
    pool.close()
    assert pool.created == 0
