"""After `101 Switching Protocols`: a byte tunnel between client and node, with its own idle
timeout (Rancher's websockets stay open for long; the default is `http_timeout`, 1800 s).

Idle means no byte in either direction. A FIN from the node ends the tunnel (a TLS client
side cannot be half-closed); a FIN from the client is passed on to the node, which may
still answer before it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

CHUNK = 256 * 1024


class _Activity:
    def __init__(self) -> None:
        self.last = time.monotonic()
        self.bytes_up = 0
        self.bytes_down = 0


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    activity: _Activity,
    upstream: bool,
) -> None:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            break
        activity.last = time.monotonic()
        if upstream:
            activity.bytes_up += len(data)
        else:
            activity.bytes_down += len(data)
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


async def run_tunnel(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    node: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    *,
    idle_timeout: float,
    client_tail: bytes = b"",
    node_tail: bytes = b"",
) -> tuple[int, int, str]:
    """Relay until one side ends or the tunnel idles; returns (bytes up, bytes down, why)."""
    client_reader, client_writer = client
    node_reader, node_writer = node
    activity = _Activity()
    if client_tail:
        node_writer.write(client_tail)
        activity.bytes_up += len(client_tail)
    if node_tail:
        client_writer.write(node_tail)
        activity.bytes_down += len(node_tail)
    up = asyncio.ensure_future(_pump(client_reader, node_writer, activity, True))
    down = asyncio.ensure_future(_pump(node_reader, client_writer, activity, False))
    why = "closed"
    try:
        pending = {up, down}
        while pending:
            wait = max(0.0, activity.last + idle_timeout - time.monotonic())
            done, pending = await asyncio.wait(
                pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if down in done:
                why = "node closed"
                break
            if up in done and up.exception() is not None:
                why = "client error"
                break
            if not done and time.monotonic() - activity.last >= idle_timeout:
                why = f"idle for {idle_timeout:g}s"
                break
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(BaseException):
                await task
    return activity.bytes_up, activity.bytes_down, why
