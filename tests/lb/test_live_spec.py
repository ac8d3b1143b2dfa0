"""`rke2ha lb serve -f SPEC`: reload on SIGHUP, RKE2 9345 gating on 6443 /readyz, workers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.lb.conftest import (
    LB_HOST,
    NODE_HOSTS,
    connect_hello,
    echo_backends,
    free_port,
    roundtrip,
)

SPEC = """
name: lbtest
hostname: rancher.example.test
provider: existing
nodes:
{nodes}
load_balancer:
  address: {lb}
  ports: [{ports}]
  health: {{interval: {interval}, timeout: 500ms, rise: 1, fall: 2}}
dns: {{zone: example.test}}
"""


def write_spec(
    path: Path, hosts: tuple[str, ...], ports: list[int], interval: str = "500ms"
) -> Path:
    nodes = "\n".join(f"  - {{name: n{h.rsplit('.', 1)[1]}, address: {h}}}" for h in hosts)
    path.write_text(
        SPEC.format(nodes=nodes, lb=LB_HOST, ports=", ".join(map(str, ports)), interval=interval)
    )
    return path


def test_sighup_adds_and_removes_backends_without_dropping(
    start_lb: Any, admin_address: str, tmp_path: Path
) -> None:
    port = free_port()
    spec = write_spec(tmp_path / "rke2ha.yaml", NODE_HOSTS[:2], [port])

    async def scenario() -> None:
        backends = await echo_backends(port)
        lb = await asyncio.to_thread(
            start_lb,
            "-f",
            str(spec),
            "--access-log",
            "off",
            listen=(LB_HOST, port),
            admin=admin_address,
        )
        conns = [await connect_hello(LB_HOST, port) for _ in range(100)]
        assert Counter(n for n, _, _ in conns) == {NODE_HOSTS[0]: 50, NODE_HOSTS[1]: 50}

        async def echo_all(rounds: int) -> None:
            for index in range(rounds):
                await asyncio.gather(
                    *(roundtrip(r, w, f"round {index}\n".encode()) for _, r, w in conns)
                )
                await asyncio.sleep(0.05)

        write_spec(spec, NODE_HOSTS[1:], [port])
        echoing = asyncio.create_task(echo_all(20))
        await asyncio.sleep(0.2)
        lb.popen.send_signal(signal.SIGHUP)
        await echoing  # every one of the 100 connections kept echoing through the reload
        status = await asyncio.to_thread(lb.status)
        states = {
            b["address"]: (b["state"], b["active"]) for b in status["frontends"][0]["backends"]
        }
        assert states[f"{NODE_HOSTS[0]}:{port}"] == ("draining", 50)
        assert states[f"{NODE_HOSTS[2]}:{port}"][0] == "up"
        fresh = [await connect_hello(LB_HOST, port) for _ in range(10)]
        assert NODE_HOSTS[0] not in {n for n, _, _ in fresh}
        for name, _, writer in conns + fresh:
            if name == NODE_HOSTS[0]:
                writer.close()
        await asyncio.sleep(1.5)  # the sweeper forgets the drained backend
        status = await asyncio.to_thread(lb.status)
        addresses = {b["address"] for b in status["frontends"][0]["backends"]}
        assert addresses == {f"{h}:{port}" for h in NODE_HOSTS[1:]}
        for name, reader, writer in conns:
            if name != NODE_HOSTS[0]:
                await roundtrip(reader, writer, b"after\n")
                writer.close()
        assert "reload:" in lb.log() and "drained, removed" in lb.log()
        # two nodes do not make HA: served anyway, and said so on start and on SIGHUP
        assert lb.log().count("the spec does not validate: nodes.count") == 2
        for backend in backends:
            await backend.kill()

    asyncio.run(scenario())


def test_9345_follows_6443_readyz(
    start_lb: Any,
    admin_address: str,
    backend_process: Any,
    test_cert: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    # The offset moves 6443/9345 to free ports: 9345+N is the supervisor, 6443+N the API.
    offset = free_port() - 9345
    while offset + 6443 < 1024 or offset + 9345 > 65535:
        offset = free_port() - 9345
    ready_files = []
    for host in NODE_HOSTS:
        ready = tmp_path / f"readyz-{host}"
        ready.write_text("200")
        ready_files.append(ready)
        backend_process(
            "--host",
            host,
            "--http-port",
            str(9345 + offset),
            "--http-port",
            str(6443 + offset),
            "--tls",
            *map(str, test_cert),
            "--readyz-file",
            str(ready),
        )
    ready_files[0].write_text("503")  # apiserver not ready: its 9345 must not get joins
    ready_files[1].write_text("401")  # RKE2's anonymous answer: up, readiness unknown
    spec = write_spec(tmp_path / "rke2ha.yaml", NODE_HOSTS, [6443, 9345], interval="300ms")
    lb = start_lb(
        "-f",
        str(spec),
        "--port-offset",
        str(offset),
        "--access-log",
        "off",
        listen=(LB_HOST, 9345 + offset),
        admin=admin_address,
    )
    supervisor = 1  # frontends in spec order: 6443, 9345
    node1 = f"{NODE_HOSTS[0]}:{9345 + offset}"
    lb.wait_state(node1, {"down"}, 5, frontend=supervisor)
    assert "status 503" in lb.backend(node1, supervisor)["reason"]
    time.sleep(1)
    for host in NODE_HOSTS[1:]:
        backend = lb.backend(f"{host}:{9345 + offset}", supervisor)
        assert backend["state"] == "up", backend
    assert (
        "readiness unknown"
        in lb.backend(f"{NODE_HOSTS[1]}:{9345 + offset}", supervisor)["last_check"]
    )
    ready_files[0].write_text("200")
    lb.wait_state(node1, {"up"}, 5, frontend=supervisor)
    ready_files[2].write_text("503")
    lb.wait_state(f"{NODE_HOSTS[2]}:{9345 + offset}", {"down"}, 5, frontend=supervisor)
    # TLS probes close cleanly: no handshake or EOF errors from the backends' TLS layer.
    assert "Traceback" not in lb.log()


def test_workers_share_health_and_serve(
    start_lb: Any, admin_address: str, backend_process: Any
) -> None:
    port, health_port = free_port(), free_port()
    for host in NODE_HOSTS:
        backend_process(
            "--host",
            host,
            "--echo-port",
            str(port),
            "--http-port",
            str(health_port),
            "--name",
            host,
        )
    args = ["--listen", f"{LB_HOST}:{port}", "--access-log", "off", "--workers", "2"]
    for host in NODE_HOSTS:
        args += ["--backend", f"{host}:{port}"]
    args += ["--health", f"http:/healthz@{health_port}", "--interval", "300ms"]
    lb = start_lb(*args, listen=(LB_HOST, port), admin=admin_address)

    async def clients() -> Counter[str]:
        conns = [await connect_hello(LB_HOST, port) for _ in range(30)]
        for _, reader, writer in conns:
            await roundtrip(reader, writer, b"w\n")
        names = Counter(n for n, _, _ in conns)
        await asyncio.sleep(0.3)
        status = await asyncio.to_thread(lb.status)
        assert status["frontends"][0]["active"] == 30
        for _, _, writer in conns:
            writer.close()
        return names

    names = asyncio.run(clients())
    assert set(names) == set(NODE_HOSTS)
    workers = lb.log().count("listening on")
    assert workers == 2, lb.log()
