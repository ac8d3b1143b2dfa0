"""`rke2ha lb serve` as a real process over real loopback sockets.

Backends are asyncio servers in the test's loop (they can be killed: refuse + reset) or
backend_server.py processes (they can be frozen with SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.lb.conftest import (
    LB_HOST,
    NODE_HOSTS,
    REPO,
    connect_hello,
    echo_backends,
    free_port,
    roundtrip,
)


def _flags(port: int, *extra: str, hosts: tuple[str, ...] = NODE_HOSTS) -> list[str]:
    args = ["--listen", f"{LB_HOST}:{port}", "--access-log", "off"]
    for host in hosts:
        args += ["--backend", f"{host}:{port}"]
    return [*args, *extra]


def test_balancing_spreads_and_metrics_parse(start_lb: Any, admin_address: str) -> None:
    port = free_port()

    async def scenario() -> Counter[str]:
        backends = await echo_backends(port)
        lb = await asyncio.to_thread(
            start_lb, *_flags(port), listen=(LB_HOST, port), admin=admin_address
        )
        conns = [await connect_hello(LB_HOST, port) for _ in range(30)]
        for _, reader, writer in conns:
            await roundtrip(reader, writer, b"ping\n")
        names = Counter(name for name, _, _ in conns)
        metrics = await asyncio.to_thread(lb.get, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        active = {
            s.labels["backend"]: s.value
            for s in families["rke2ha_lb_backend_connections_active"].samples
        }
        assert active == {f"{h}:{port}": 10.0 for h in NODE_HOSTS}
        up = [s.value for s in families["rke2ha_lb_backend_up"].samples]
        assert up == [1.0, 1.0, 1.0]
        total = families["rke2ha_lb_frontend_connections"].samples[0]
        # 30 clients and the fixture's readiness probe
        assert total.name == "rke2ha_lb_frontend_connections_total" and total.value == 31
        assert "rke2ha_lb_backend_health" in families
        page = await asyncio.to_thread(lb.get, "/")
        assert "<table>" in page and f"{NODE_HOSTS[0]}:{port}" in page
        for _, _, writer in conns:
            writer.close()
        for backend in backends:
            await backend.kill()
        return names

    names = asyncio.run(scenario())
    # least-connections with 30 open connections: exactly even
    assert names == {h: 10 for h in NODE_HOSTS}


def test_killed_backend_no_client_failure_and_marked_down(
    start_lb: Any, admin_address: str
) -> None:
    port = free_port()

    async def scenario() -> None:
        backends = await echo_backends(port)
        # Active checks every 30 s: only the passive check can notice the dead node.
        lb = await asyncio.to_thread(
            start_lb,
            *_flags(port, "--interval", "30s"),
            listen=(LB_HOST, port),
            admin=admin_address,
        )
        await backends[1].kill()
        seen: Counter[str] = Counter()
        for _ in range(30):
            name, reader, writer = await connect_hello(LB_HOST, port)
            await roundtrip(reader, writer, b"x" * 1000)
            seen[name] += 1
            writer.close()
        assert NODE_HOSTS[1] not in seen and sum(seen.values()) == 30
        status = await asyncio.to_thread(lb.backend, f"{NODE_HOSTS[1]}:{port}")
        assert status["state"] == "down"
        assert "connect failed" in status["reason"] and "passive" in status["reason"]
        frontend = (await asyncio.to_thread(lb.status))["frontends"][0]
        assert frontend["retries"] >= 1 and frontend["failed"] == 0
        for backend in (backends[0], backends[2]):
            await backend.kill()

    asyncio.run(scenario())


def test_frozen_backend_marked_down_by_active_check(
    start_lb: Any, admin_address: str, backend_process: Any
) -> None:
    port, health_port = free_port(), free_port()
    procs = [
        backend_process(
            "--host", h, "--echo-port", str(port), "--http-port", str(health_port), "--name", h
        )
        for h in NODE_HOSTS
    ]
    interval, timeout, fall = 0.5, 0.5, 2
    lb = start_lb(
        *_flags(
            port,
            "--health",
            f"http:/healthz@{health_port}",
            "--interval",
            f"{interval}s",
            "--timeout",
            f"{timeout}s",
            "--fall",
            str(fall),
        ),
        listen=(LB_HOST, port),
        admin=admin_address,
    )
    address = f"{NODE_HOSTS[2]}:{port}"
    lb.wait_state(address, {"up"}, 5)
    time.sleep(0.3)
    procs[2].freeze()
    took = lb.wait_state(address, {"down"}, 10)
    assert took <= interval * fall + timeout + 0.5, took
    assert "timeout" in lb.backend(address)["reason"]
    procs[2].thaw()
    lb.wait_state(address, {"up"}, 5)


def test_half_close_passes_fin_and_keeps_the_other_direction(start_lb: Any) -> None:
    port = free_port()

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN arrives through the LB
        for _ in range(3):  # keep talking after the FIN
            writer.write(f"got {len(data)}\n".encode())
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    async def scenario() -> bytes:
        server = await asyncio.start_server(backend, NODE_HOSTS[0], port)
        await asyncio.to_thread(
            start_lb, *_flags(port, hosts=NODE_HOSTS[:1]), "--admin", "off", listen=(LB_HOST, port)
        )
        reader, writer = await asyncio.open_connection(LB_HOST, port)
        writer.write(b"a" * 200_000)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        server.close()
        return answer

    assert asyncio.run(scenario()) == b"got 200000\n" * 3


def test_send_proxy_v2_gives_the_backend_the_client_address(start_lb: Any) -> None:
    from rke2ha.lb.proxyproto import parse_proxy_v2

    port = free_port()
    got: list[Any] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            got.append(parse_proxy_v2(await reader.readexactly(28)))
            writer.write(await reader.readexactly(5))
            await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the fixture's readiness probe connects and closes
        writer.close()

    async def scenario() -> tuple[str, int]:
        server = await asyncio.start_server(backend, NODE_HOSTS[0], port)
        await asyncio.to_thread(
            start_lb,
            *_flags(port, "--send-proxy", hosts=NODE_HOSTS[:1]),
            "--admin",
            "off",
            listen=(LB_HOST, port),
        )
        reader, writer = await asyncio.open_connection(LB_HOST, port, local_addr=("127.0.30.99", 0))
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        local = writer.get_extra_info("sockname")
        writer.close()
        server.close()
        return local[0], local[1]

    client = asyncio.run(scenario())
    assert (client, (LB_HOST, port)) in [(source, dest) for source, dest, _ in got]


def test_sigterm_stops_accepting_and_drains(start_lb: Any) -> None:
    port = free_port()

    async def scenario() -> None:
        backends = await echo_backends(port)
        lb = await asyncio.to_thread(
            start_lb, *_flags(port), "--admin", "off", listen=(LB_HOST, port)
        )
        _, reader, writer = await connect_hello(LB_HOST, port)
        lb.popen.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        try:  # the listener is closed: new clients are refused
            await asyncio.open_connection(LB_HOST, port)
            raise AssertionError("a new connection was accepted after SIGTERM")
        except ConnectionRefusedError:
            pass
        for _ in range(5):  # the established one keeps working while draining
            await roundtrip(reader, writer, b"still here\n")
            await asyncio.sleep(0.1)
        assert lb.popen.poll() is None
        writer.close()
        deadline = time.monotonic() + 5
        while lb.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert lb.popen.returncode == 0, lb.log()
        assert "draining 1" in lb.log()
        for backend in backends:
            await backend.kill()

    asyncio.run(scenario())


def test_drain_timeout_bounds_shutdown(start_lb: Any) -> None:
    port = free_port()

    async def scenario() -> None:
        backends = await echo_backends(port)
        lb = await asyncio.to_thread(
            start_lb,
            *_flags(port),
            "--admin",
            "off",
            "--drain-timeout",
            "1s",
            listen=(LB_HOST, port),
        )
        _, reader, _ = await connect_hello(LB_HOST, port)
        started = time.monotonic()
        lb.popen.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at the deadline
        while lb.popen.poll() is None and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        assert lb.popen.returncode == 0 and time.monotonic() - started < 3
        for backend in backends:
            await backend.kill()

    asyncio.run(scenario())


MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


@pytest.fixture
def migrate_requests() -> Iterator[None]:
    """Handover as the README documents it: net.ipv4.tcp_migrate_req=1 (Linux >= 5.14).

    Without it the kernel resets a connection whose handshake completed on the old
    listener in the instant it closes (a window the README's Known gaps names); with it,
    the kernel moves such connections to the new listener. Set for this test only, as root,
    and restored afterwards.
    """
    if not MIGRATE_REQ.exists():
        pytest.skip("this kernel has no net.ipv4.tcp_migrate_req (Linux < 5.14)")
    before = MIGRATE_REQ.read_text().strip()
    if before != "1":
        if os.geteuid() != 0:
            pytest.skip("net.ipv4.tcp_migrate_req is 0 and only root may set it")
        MIGRATE_REQ.write_text("1\n")
    try:
        yield
    finally:
        if before != "1":
            MIGRATE_REQ.write_text(before + "\n")


def test_handover_refuses_nothing(start_lb: Any, migrate_requests: None) -> None:
    port = free_port()

    async def scenario() -> tuple[int, list[str]]:
        backends = await echo_backends(port)
        old = await asyncio.to_thread(
            start_lb, *_flags(port), "--admin", "off", listen=(LB_HOST, port)
        )
        errors: list[str] = []
        done = 0
        stop = asyncio.Event()

        async def client() -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    _, reader, writer = await connect_hello(LB_HOST, port)
                    await roundtrip(reader, writer, b"hi\n")
                    writer.close()
                    done += 1
                except (OSError, AssertionError, asyncio.IncompleteReadError) as err:
                    errors.append(repr(err))

        clients = [asyncio.create_task(client()) for _ in range(8)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(start_lb, *_flags(port), "--admin", "off", listen=None)
        await asyncio.sleep(0.5)  # the new process is listening beside the old one
        old.popen.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*clients)
        assert old.popen.wait(5) == 0
        for backend in backends:
            await backend.kill()
        return done, errors

    done, errors = asyncio.run(scenario())
    assert errors == [] and done > 100


def test_bad_flags_and_unbindable_listen(run_cli: Any) -> None:
    result = run_cli("lb", "serve", "--listen", "127.0.30.10:99999", "--backend", "127.0.30.11:80")
    assert result.code == 2 and "--listen" in result.err and "Traceback" not in result.err
    result = run_cli("lb", "serve", "--listen", "127.0.30.10:8080")
    assert result.code == 2 and "--backend" in result.err
    result = run_cli(
        "lb", "serve", "--listen", "127.0.30.10:8080", "--backend", "x:1", "--workers", "0"
    )
    assert result.code == 2 and "--workers" in result.err and "Traceback" not in result.err
    # 192.0.2.1 (TEST-NET-1) is not on this machine: bind fails, nothing is sent anywhere.
    result = run_cli(
        "lb", "serve", "--listen", "192.0.2.1:8080", "--backend", "127.0.30.11:80", "--admin", "off"
    )
    assert result.code == 1, result.err
    assert "cannot listen on 192.0.2.1:8080" in result.err and "Traceback" not in result.err
    with socket.socket() as holder:  # a port held without SO_REUSEPORT
        holder.bind((LB_HOST, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = run_cli(
            "lb",
            "serve",
            "--listen",
            f"{LB_HOST}:{taken}",
            "--backend",
            "127.0.30.11:80",
            "--admin",
            "off",
        )
    assert result.code == 1 and "already in use" in result.err.lower(), result.err


def test_max_connections_applies_back_pressure(start_lb: Any) -> None:
    port = free_port()

    async def scenario() -> None:
        backends = await echo_backends(port)
        await asyncio.to_thread(
            start_lb,
            *_flags(port, "--max-connections", "5"),
            "--admin",
            "off",
            listen=(LB_HOST, port),
        )
        await asyncio.sleep(0.3)  # the fixture's probe connection has ended
        served = [await connect_hello(LB_HOST, port) for _ in range(5)]
        # Beyond the limit the kernel completes the handshake (backlog), nobody is refused,
        # and the load balancer does not accept: no greeting until a slot frees up.
        waiting = [await asyncio.open_connection(LB_HOST, port) for _ in range(3)]
        for reader, _ in waiting:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readline(), 0.5)
        for _, _, writer in served[:2]:
            writer.close()
        greeted = 0
        for reader, _ in waiting:
            try:
                line = await asyncio.wait_for(reader.readline(), 0.5)
                greeted += line.startswith(b"hello")
            except TimeoutError:
                pass
        assert greeted == 2
        for _, writer in waiting:
            writer.close()
        for _, _, writer in served[2:]:
            writer.close()
        for backend in backends:
            await backend.kill()

    asyncio.run(scenario())


def _workers_of(pid: int) -> list[int]:
    """The lb worker processes `pid` started (not its resource tracker)."""
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            if b"rke2ha.lb.workers" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    except FileNotFoundError:
        pass
    return found


def test_sigterm_while_workers_start_stops_cleanly() -> None:
    """SIGTERM between the first worker's start and the workers' listening: the supervisor
    stops them, frees the shared block (no resource_tracker warning) and exits 0."""
    listen = f"{LB_HOST}:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rke2ha", "lb", "serve", "--listen", listen,
         "--backend", "127.0.30.11:80", "--admin", "off", "--workers", "2"],
        stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (workers := _workers_of(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert workers, "no worker started"
        proc.send_signal(signal.SIGTERM)  # a worker is an interpreter still importing
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopping" in err and "stopped" in err, err
    assert "leaked" not in err and "Traceback" not in err, err
    assert "workers listening" not in err  # it was stopped during start-up, as intended
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
