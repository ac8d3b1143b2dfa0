"""Layer 4 retries only a failed connect: a client's bytes never reach a second backend.

The relay tries another backend when a connect is refused or times out (nothing was sent);
once connected, a backend that reads the client's bytes and closes or resets ends that
client's connection. Loopback 127.0.141.0/24.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from tests.lb.conftest import free_port

LB_HOST = "127.0.141.10"
HOSTS = ("127.0.141.11", "127.0.141.12", "127.0.141.13")
REQUEST = b"POST /once HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"


def test_a_backend_that_takes_the_bytes_and_dies_is_not_followed_by_another(
    start_lb: Any,
) -> None:
    port = free_port(LB_HOST)
    seen: list[tuple[str, bytes]] = []

    async def scenario() -> None:
        servers = []
        for host in HOSTS:

            async def handle(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str = host
            ) -> None:
                data = await reader.read(65536)
                if not data:
                    writer.close()  # a health check's connect
                    return
                seen.append((host, data))
                if len(seen) % 2:  # every other one resets instead of closing
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()

            servers.append(await asyncio.start_server(handle, host, port))
        args = ["--listen", f"{LB_HOST}:{port}", "--access-log", "off", "--admin", "off"]
        for host in HOSTS:
            args += ["--backend", f"{host}:{port}"]
        await asyncio.to_thread(start_lb, *args, listen=(LB_HOST, port))
        for attempt in range(6):
            reader, writer = await asyncio.open_connection(LB_HOST, port)
            writer.write(REQUEST)
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(65536), 5) == b""
            writer.close()
            await asyncio.sleep(0.05)  # the backend's record lands before the next count
            assert len(seen) == attempt + 1, seen
        for server in servers:
            server.close()

    asyncio.run(scenario())
    assert all(data == REQUEST for _, data in seen)
