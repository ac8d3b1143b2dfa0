"""Layer 4 at the descriptor limit: a client that cannot get a backend socket is closed and
forgotten, and a bulk transfer that cannot get a pipe is copied instead (no spin)."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import time
from typing import Any

import pytest
from tests.lb.conftest import LB_HOST, NODE_HOSTS, connect_hello, echo_backends, free_port

from rke2ha.lb.relay import PipePool


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _lb_at_its_descriptor_limit(
    start_lb: Any, admin_address: str, port: int
) -> tuple[Any, int, list[Any]]:
    """`lb serve` to one backend, holding five client/backend pairs, with room for one
    descriptor more: the next client is accepted and its backend socket() fails (EMFILE).
    Returns the load balancer, its descriptor count before the limit, the held clients."""
    lb = await asyncio.to_thread(
        start_lb,
        "--listen", f"{LB_HOST}:{port}", "--backend", f"{NODE_HOSTS[0]}:{port}",
        "--access-log", "off", "--interval", "60s", "--drain-timeout", "10s",
        listen=(LB_HOST, port), admin=admin_address,
    )  # fmt: skip
    await asyncio.sleep(0.3)
    base = _fds(lb.pid)
    subprocess.run(["prlimit", "--pid", str(lb.pid), f"--nofile={base + 11}"], check=True)
    held = [await connect_hello(LB_HOST, port) for _ in range(5)]
    return lb, base, held


def test_out_of_descriptors_at_the_backend_socket_closes_that_client(
    start_lb: Any, admin_address: str
) -> None:
    port = free_port()

    async def scenario() -> None:
        backends = await echo_backends(port, hosts=NODE_HOSTS[:1])
        lb, base, held = await _lb_at_its_descriptor_limit(start_lb, admin_address, port)
        extra = []
        deadline = time.monotonic() + 5
        while "cannot open a socket to a backend" not in lb.log():
            assert time.monotonic() < deadline, lb.log()
            extra.append(await asyncio.open_connection(LB_HOST, port))
            await asyncio.sleep(0.05)
        for _, _, writer in held:
            writer.close()
        for _, writer in extra:
            writer.close()
        await asyncio.sleep(1.0)
        status = await asyncio.to_thread(lb.status)
        assert status["frontends"][0]["active"] == 0  # the refused client was not kept
        assert _fds(lb.pid) <= base + 1  # nothing leaked (an admin connection may linger)
        started = time.monotonic()
        lb.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(lb.popen.wait, 10)
        assert time.monotonic() - started < 3  # no session left to wait the drain out for
        for backend in backends:
            await backend.kill()

    asyncio.run(scenario())


def test_clients_queued_behind_a_descriptor_shortage_wait_rather_than_being_closed(
    start_lb: Any, admin_address: str
) -> None:
    """Accepting pauses at the first failure: the rest of a burst stays in the backlog and
    is served once descriptors are free (before, the whole burst was accepted and closed)."""
    port = free_port()

    async def scenario() -> int:
        backends = await echo_backends(port, hosts=NODE_HOSTS[:1])
        lb, _, held = await _lb_at_its_descriptor_limit(start_lb, admin_address, port)
        os.kill(lb.pid, signal.SIGSTOP)  # the next ten wait in the backlog: one accept burst
        try:
            queued = [await asyncio.open_connection(LB_HOST, port) for _ in range(10)]
        finally:
            os.kill(lb.pid, signal.SIGCONT)
        await asyncio.sleep(0.3)
        for _, _, writer in held:
            writer.close()
        served = 0
        for reader, writer in queued:
            try:
                line = await asyncio.wait_for(reader.readline(), 3)
            except (TimeoutError, ConnectionError):
                line = b""
            served += line.startswith(b"hello ")
            writer.close()
        for backend in backends:
            await backend.kill()
        return served

    served = asyncio.run(scenario())
    assert served >= 5, served  # at most one client per pause is lost, not the whole burst


def test_pipe_pool_falls_back_when_pipes_cannot_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_descriptors(flags: int) -> tuple[int, int]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "pipe2", no_descriptors)
    pool = PipePool(4)
    assert pool.acquire() is None  # the relay copies this chunk instead of splicing it
    assert pool.exhausted == 1 and pool.created == 0
