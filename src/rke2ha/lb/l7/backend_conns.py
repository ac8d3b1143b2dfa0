"""Keep-alive connections to the nodes' port 80: open, lend, take back, retire.

A connection is lent to one request at a time and comes back only when its response ended
cleanly with keep-alive. Idle connections older than `idle_timeout` are retired when met
(nodes close idle connections themselves, often after 60-75 s); `reused` tells the proxy
that a close before any response byte may be that race, which is what makes a retry of an
idempotent request safe.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rke2ha.lb.l7.end_of_turn import EndOfTurn
from rke2ha.lb.l7.http_back import ResponseReader
from rke2ha.lb.l7.nodes import Node

READ_SIZE = 256 * 1024


class BackProtocol(asyncio.StreamReaderProtocol):
    """A node connection's protocol: bytes go to `sink` while a callback exchange runs
    (see `fast.py`), else to the StreamReader as usual. `received` counts every byte the
    node sent (heads, bodies, tunnels), whichever path reads it."""

    sink: Callable[[bytes], None] | None = None
    received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        sink = self.sink
        if sink is None:
            super().data_received(data)
        else:
            sink(data)

    def eof_received(self) -> bool:
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink(b"")
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink(b"")
        super().connection_lost(exc)


class ConnectFailed(Exception):
    """Connecting to a node failed; `str()` is the reason for logs."""


@dataclass(eq=False)
class BackendConnection:
    node: Node
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    response: ResponseReader = field(default_factory=ResponseReader)
    reused: bool = False
    idle_since: float = 0.0
    reusable_after: bool = False  # the last response ended cleanly with keep-alive
    proto: BackProtocol | None = None
    # writer.transport, kept: StreamWriter.transport is a property, and every request asks.
    transport: asyncio.Transport = field(init=False)
    sent: int = 0  # bytes written to the node: heads, bodies with their framing, tunnels

    def __post_init__(self) -> None:
        self.transport = self.writer.transport  # type: ignore[assignment]

    @property
    def received(self) -> int:
        """Bytes the node sent on this connection so far (its protocol counts them)."""
        proto = self.proto
        return proto.received if proto is not None else 0

    def write(self, data: bytes) -> None:
        self.writer.write(data)
        self.sent += len(data)

    def close(self) -> None:
        self.transport.abort()

    @property
    def usable(self) -> bool:
        return not self.transport.is_closing() and not self.reader.at_eof()


class BackendPool:
    def __init__(
        self, connect_timeout: float, idle_timeout: float = 50.0, max_idle_per_node: int = 128
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        # Writes of this process's layer 7 sessions held to the end of the loop's turn
        # (the client side's TLS transports and the callback path's request heads).
        self.batch = EndOfTurn()
        self.max_idle_per_node = max_idle_per_node
        self._idle: defaultdict[str, deque[BackendConnection]] = defaultdict(deque)

    def take_idle(self, node: Node) -> BackendConnection | None:
        """An idle connection to `node` if one is alive, else None (no connect)."""
        idle = self._idle[node.id]
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            # `usable`, written out: this runs for every request of the callback path
            if (
                not conn.transport.is_closing()
                and not conn.reader.at_eof()
                and now - conn.idle_since < self.idle_timeout
            ):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def get(self, node: Node) -> BackendConnection:
        """An idle connection to `node` if one is alive, else a new one (ConnectFailed)."""
        idle = self._idle[node.id]
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used one is the least likely to be stale
            if conn.usable and now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            conn.close()
        return await self._connect(node)

    async def _connect(self, node: Node) -> BackendConnection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                loop = asyncio.get_running_loop()
                reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
                proto = BackProtocol(reader, loop=loop)
                transport, _ = await loop.create_connection(lambda: proto, node.host, node.port)
                writer = asyncio.StreamWriter(transport, proto, reader, loop)
        except TimeoutError:
            raise ConnectFailed(f"connect timed out after {self.connect_timeout:g}s") from None
        except OSError as err:
            raise ConnectFailed(f"connect failed: {err.strerror or err}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BackendConnection(node, reader, writer, proto=proto)

    def put(self, conn: BackendConnection) -> None:
        """Take back a connection whose last response ended cleanly with keep-alive."""
        idle = self._idle[conn.node.id]
        # A node's close that raced the end of the response shows as a closing transport;
        # an EOF not yet acted upon is caught by `take_idle` (which checks `usable`).
        if conn.transport.is_closing() or len(idle) >= self.max_idle_per_node:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close_all(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
