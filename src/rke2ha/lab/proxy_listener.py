"""A listener that requires a PROXY protocol header first, as nginx's `listen ... proxy_protocol`.

ingress-nginx with `use-proxy-protocol: "true"` puts `proxy_protocol` on its listeners
(kubernetes/ingress-nginx rootfs/etc/nginx/template/nginx.tmpl, buildHTTPListener /
buildHTTPSListener). nginx then reads a PROXY v1 or v2 header before anything else and
closes a connection that does not start with one, without an answer ("broken header"
in its error log; nginx docs, ngx_http_core_module `listen ... proxy_protocol`). The node
emulator does the same here, on 80 and 443, when its ingress config says so.

How: accept, *peek* at the first bytes (MSG_PEEK) until the header is complete, consume
exactly the header, and hand the socket to aiohttp (`connect_accepted_socket`, with TLS on
443): bytes the client sent after the header, a TLS ClientHello included, stay in the
kernel's buffer for aiohttp to read. `header_length` and `parse_header` are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

from rke2ha.lb.proxyproto import SIGNATURE as V2_SIGNATURE
from rke2ha.lb.proxyproto import parse_proxy_v2

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included (proxy-protocol.txt §2.1)
HEADER_TIMEOUT = 5.0
Address = tuple[str, int]


def header_length(data: bytes) -> int | None:
    """Length of the PROXY header at the start of `data`; None: need more bytes.

    ValueError when `data` cannot start a PROXY header (nginx: "broken header").
    """
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)] and len(data) < 16:
        return None
    if data.startswith(V2_SIGNATURE):
        return 16 + int.from_bytes(data[14:16], "big")
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)] and len(data) < len(V1_PREFIX):
        return None
    if data.startswith(V1_PREFIX):
        end = data.find(b"\r\n")
        if end >= 0:
            return end + 2
        if len(data) >= V1_MAX:
            raise ValueError("PROXY v1 line too long")
        return None
    raise ValueError("not a PROXY protocol header")


def parse_header(header: bytes) -> tuple[Address, Address] | None:
    """(source, destination) named by a complete header; None when it names none (v2
    LOCAL, a health check's own connection; v1 UNKNOWN): nginx then keeps the socket's
    addresses (proxy-protocol.txt §2.2)."""
    if header.startswith(V2_SIGNATURE):
        source, destination, _ = parse_proxy_v2(header)
        if source == ("", 0):
            return None
        return source, destination
    fields = header[:-2].decode("ascii", "replace").split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return None
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ValueError("malformed PROXY v1 line")
    return (fields[2], int(fields[4])), (fields[3], int(fields[5]))


async def _read_header(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """Consume exactly the PROXY header from `sock` (non-blocking), leaving what follows."""
    while True:
        try:
            data = sock.recv(V1_MAX + 512, socket.MSG_PEEK)
        except BlockingIOError:
            data = None
        if data is not None:
            if not data:
                raise ConnectionError("closed before a PROXY header")
            length = header_length(data)
            if length is not None and len(data) >= length:
                return sock.recv(length)
        ready = loop.create_future()
        loop.add_reader(sock.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(sock.fileno())


class ProxyProtocolSite:
    """Like aiohttp's TCPSite, for one address and port, but PROXY header first."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        on_header: Callable[[Address, tuple[Address, Address] | None], None],
    ) -> None:
        self._factory = protocol_factory
        self._host, self._port = host, port
        self._ssl = ssl_context
        self._on_header = on_header  # (peer the socket sees, what the header names)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._port))
        except OSError:
            listener.close()
            raise
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept_loop(listener))

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        for task in list(self._pending):
            task.cancel()
        if self._listener is not None:
            self._listener.close()
        self._listener = self._accepting = None

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(self._serve(loop, sock))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                header = await _read_header(loop, sock)
            named = parse_header(header)
        except (ValueError, ConnectionError, OSError, TimeoutError):
            # nginx reads the broken header and closes, no answer. Reading what is there
            # first makes the close a FIN, as nginx's is, not a reset for unread data.
            with contextlib.suppress(OSError):
                sock.recv(65536)
            sock.close()
            return
        try:
            peer = sock.getpeername()[:2]
            self._on_header((peer[0], peer[1]), named)
            await loop.connect_accepted_socket(self._factory, sock, ssl=self._ssl)
        except (OSError, ssl.SSLError, ConnectionError):
            sock.close()
