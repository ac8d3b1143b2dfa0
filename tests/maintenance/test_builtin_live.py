"""`rke2ha lb drain|enable` against a real `rke2ha lb serve -f SPEC` (layer 4), one process
and `--workers 2`: a drained node gets no new connection while its open ones keep
echoing, a SIGHUP reload keeps it out, enable brings it back. Own range 127.0.219.0/24."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.lb.conftest import REPO, connect_hello, echo_backends, roundtrip

LB = "127.0.219.10"
NODES = ("127.0.219.11", "127.0.219.12", "127.0.219.13")
CONNECTIONS = 30


def free_port() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((LB, 0))
            port = int(sock.getsockname()[1])
        try:
            for host in NODES:
                with socket.socket() as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def write_spec(path: Path, port: int, admin: int) -> Path:
    nodes = "\n".join(f"  - {{name: node-{i + 1}, address: {h}}}" for i, h in enumerate(NODES))
    path.write_text(
        f"name: maint\nhostname: rancher.example.test\nprovider: existing\nnodes:\n{nodes}\n"
        f"load_balancer:\n  address: {LB}\n  admin: {LB}:{admin}\n  ports: [{port}]\n"
        "  health: {interval: 300ms, timeout: 300ms, rise: 1, fall: 2}\n"
        "dns: {zone: example.test}\n"
    )
    return path


def rke2ha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rke2ha", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def node2(admin: str) -> Any:
    with urllib.request.urlopen(f"http://{admin}/status", timeout=5) as response:
        status = json.loads(response.read())
    return next(b for b in status["frontends"][0]["backends"] if b["name"] == "node-2")


@pytest.mark.parametrize("workers", [1, 2])
def test_drain_reload_enable(start_lb: Any, tmp_path: Path, workers: int) -> None:
    port, admin_port = free_port(), free_port()
    admin = f"{LB}:{admin_port}"
    spec = write_spec(tmp_path / "rke2ha.yaml", port, admin_port)

    async def spread() -> Counter[str]:
        conns = [await connect_hello(LB, port) for _ in range(CONNECTIONS)]
        for _, reader, writer in conns:  # data, so the backend counts it as client traffic
            await roundtrip(reader, writer, b"x\n")
            writer.close()
        return Counter(host for host, _, _ in conns)

    async def scenario() -> None:
        backends = await echo_backends(port, NODES)
        lb = await asyncio.to_thread(
            start_lb,
            "-f",
            str(spec),
            "--workers",
            str(workers),
            "--access-log",
            "off",
            listen=(LB, port),
        )
        # with --workers the supervisor's states reach the workers within a sync interval
        seen: set[str] = set()
        for _ in range(10):  # bounded: every node takes connections within a few rounds
            seen |= set(await spread())
            if seen == set(NODES):
                break
            await asyncio.sleep(0.3)
        assert seen == set(NODES)
        # least-connections: connections held open spread over the nodes, so a few suffice
        # (closing the others at once would race the LB's count and churn connections)
        opened = [await connect_hello(LB, port) for _ in range(3 * len(NODES))]
        kept = [(reader, writer) for host, reader, writer in opened if host == NODES[1]][:2]
        assert len(kept) == 2, Counter(host for host, _, _ in opened)
        for _, reader, writer in opened:
            if (reader, writer) not in kept:
                writer.close()

        drain = await asyncio.to_thread(rke2ha, "lb", "drain", "node-2", "-f", str(spec))
        assert drain.returncode == 0, drain.stderr
        assert drain.stdout.startswith("node-2: drain"), drain.stdout
        await asyncio.sleep(1.0)  # 20 sync intervals of --workers, on a loaded machine
        # `served`, not `accepted`: the drained node is still TCP-checked every 300 ms
        served = backends[1].served
        assert NODES[1] not in await spread()
        assert backends[1].served == served  # no client connection reached node-2
        for reader, writer in kept:  # open before the drain: they still echo
            await roundtrip(reader, writer, b"still here\n")
        state = await asyncio.to_thread(node2, admin)
        assert (state["state"], state["health"], state["serves"]) == ("drain", "up", False)
        assert state["maintenance_since"]

        lb.popen.send_signal(signal.SIGHUP)  # a reload does not bring it back
        await asyncio.sleep(1.5)
        assert NODES[1] not in await spread()
        # checks kept running all along: node-2 passed them and still stays out
        assert (await asyncio.to_thread(node2, admin))["state"] == "drain"

        enable = await asyncio.to_thread(rke2ha, "lb", "enable", "node-2", "-f", str(spec))
        assert enable.returncode == 0, enable.stderr
        await asyncio.sleep(0.5)
        assert (await spread())[NODES[1]] > 0
        for reader, writer in kept:
            await roundtrip(reader, writer, b"and after\n")
            writer.close()
        for backend in backends:
            await backend.kill()

    asyncio.run(scenario())
