"""The socket-driven TLS transport, over real sockets and real TLS, on uvloop and asyncio.

The server side is what the frontend does: a listening socket accepted inside the test's
event loop, `wrap_accepted`, `start()`, and on a good handshake `set_protocol` then
`connection_made`. Clients are either asyncio streams with an SSL context or blocking
`ssl.SSLSocket`s run in a thread where the exact bytes matter (a clean close_notify versus a
bare TCP end, records sent one by one).

Both loops are the real ones, subclassed only to record which descriptors are registered
with `add_reader`/`add_writer`, so a test can say that a closed connection is no longer
polled. Everything listens on 127.0.91.0/24 (this file's loopback range).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import random
import select
import socket
import ssl
import struct
import termios
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

import pytest
import uvloop
from helpers import HOSTNAME, CertFiles, client_context

from rke2ha.lb.l7 import tls_transport
from rke2ha.lb.l7.end_of_turn import EndOfTurn
from rke2ha.lb.l7.tls import load_certificate
from rke2ha.lb.l7.tls_transport import (
    HIGH_WATER,
    LOW_WATER,
    TLSSocketTransport,
    wrap_accepted,
)

HOST = "127.0.91.1"
STEP = 3.0  # the longest any single wait in a test may take
TEST_TIMEOUT = 8.0  # a whole scenario, inside the loop
SMALL_BUFFER = 32 * 1024  # SO_SNDBUF / SO_RCVBUF where a test needs the kernel to fill up

pytestmark = pytest.mark.timeout(30)

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


# ---- loops that remember what they poll ----------------------------------------------------


class _Tracking(asyncio.AbstractEventLoop):
    """Records the descriptors registered through the public add_reader/add_writer."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set[int] = set()
        self.writers: set[int] = set()

    @property
    def polled(self) -> set[int]:
        return self.readers | self.writers

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[[Unpack[Ts]], Any], *args: *Ts
    ) -> None:
        super().add_reader(fd, callback, *args)
        self.readers.add(_fd(fd))

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        self.readers.discard(_fd(fd))
        return bool(super().remove_reader(fd))

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[[Unpack[Ts]], Any], *args: *Ts
    ) -> None:
        super().add_writer(fd, callback, *args)
        self.writers.add(_fd(fd))

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        self.writers.discard(_fd(fd))
        return bool(super().remove_writer(fd))


def _fd(fd: FileDescriptorLike) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class TrackingUVLoop(_Tracking, uvloop.Loop):  # type: ignore[misc]
    pass


class TrackingAsyncioLoop(_Tracking, asyncio.SelectorEventLoop):
    pass


LOOPS: dict[str, Callable[[], _Tracking]] = {
    "uvloop": TrackingUVLoop,
    "asyncio": TrackingAsyncioLoop,
}


def polled() -> set[int]:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, _Tracking)
    return loop.polled


class Harness:
    """Runs one scenario on a fresh loop; collects what reaches the loop's exception handler."""

    def __init__(self, factory: Callable[[], _Tracking]) -> None:
        self.factory = factory
        self.loop: _Tracking | None = None
        self.errors: list[dict[str, Any]] = []

    def _make_loop(self) -> _Tracking:
        self.loop = self.factory()
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        return self.loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(TEST_TIMEOUT):
                return await coro

        with asyncio.Runner(loop_factory=self._make_loop) as runner:
            return runner.run(bounded())

    def take_errors(self) -> list[dict[str, Any]]:
        errors, self.errors = self.errors, []
        return errors


@pytest.fixture(params=sorted(LOOPS))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    runner = Harness(LOOPS[request.param])
    yield runner
    assert runner.errors == [], "unexpected calls of the loop's exception handler"
    assert runner.loop is None or runner.loop.polled == set(), "descriptors still polled"


@pytest.fixture
def server_context(cert: CertFiles) -> ssl.SSLContext:
    return load_certificate(cert.cert, cert.key, HOSTNAME).context


@pytest.fixture(params=["write_at_once", "end_of_turn"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    """Every test runs with writes made at once and with writes held to the end of the
    loop's turn (`EndOfTurn`, as the frontend runs it)."""
    with Listener(batched=request.param == "end_of_turn") as server:
        yield server


@pytest.fixture
def listener_at_once() -> Iterator[Listener]:
    """For tests whose timing needs each write on the socket before write() returns."""
    with Listener() as server:
        yield server


# ---- the server side -----------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    """A protocol that writes down what the transport tells it (runs of data as one entry)."""

    def __init__(
        self,
        *,
        echo: bool = False,
        flow: bool = False,
        pause_on_made: bool = False,
        pause_after_first: bool = False,
        on_made: Callable[[TLSSocketTransport], None] | None = None,
    ) -> None:
        self.echo = echo
        self.flow = flow  # pause reading while the transport asks us to stop writing
        self.pause_on_made = pause_on_made
        self.pause_after_first = pause_after_first
        self.on_made = on_made
        self.events: list[str] = []
        self.flow_events: list[str] = []
        self.data = bytearray()
        self.chunks = 0
        self.transport: TLSSocketTransport | None = None
        self.handshaking_at_made: bool | None = None
        self.version_at_made: str | None = None
        self.lost_exc: BaseException | None = None
        self._lost = asyncio.Event()
        self._grew = asyncio.Event()
        self.paused_writing = asyncio.Event()

    def _note(self, event: str) -> None:
        if not (event == "data" and self.events and self.events[-1] == "data"):
            self.events.append(event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TLSSocketTransport)
        self._note("made")
        self.transport = transport
        self.handshaking_at_made = transport.handshaking
        self.version_at_made = transport.get_extra_info("ssl_object").version()
        if self.pause_on_made:
            transport.pause_reading()
        if self.on_made is not None:
            self.on_made(transport)

    def data_received(self, data: bytes) -> None:
        self._note("data")
        self.data += data
        self.chunks += 1
        self._grew.set()
        assert self.transport is not None
        if self.echo:
            self.transport.write(data)
        if self.pause_after_first and self.chunks == 1:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._note("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._note("lost")
        self.lost_exc = exc
        self._lost.set()

    def pause_writing(self) -> None:
        self.flow_events.append("pause")
        self.paused_writing.set()
        if self.flow:
            assert self.transport is not None
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.flow_events.append("resume")
        if self.flow:
            assert self.transport is not None
            self.transport.resume_reading()

    async def wait_bytes(self, count: int) -> None:
        async with asyncio.timeout(STEP):
            while len(self.data) < count:
                self._grew.clear()
                await self._grew.wait()

    async def wait_lost(self) -> BaseException | None:
        await asyncio.wait_for(self._lost.wait(), STEP)
        return self.lost_exc


@dataclass
class Server:
    transport: TLSSocketTransport
    peer: Any
    fd: int
    handshakes: list[BaseException | None]  # every on_handshake(transport, err) call
    done: asyncio.Future[BaseException | None]

    async def handshake(self) -> BaseException | None:
        return await asyncio.wait_for(self.done, STEP)


class Listener:
    def __init__(self, batched: bool = False) -> None:
        self.batched = batched
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    async def accept(
        self,
        context: ssl.SSLContext,
        protocol: asyncio.Protocol | None = None,
        *,
        early: bool = False,
        sndbuf: int | None = None,
    ) -> Server:
        """Accept one client and start its handshake, the way the frontend does.

        `early` sets the protocol before the handshake, so a protocol callback made on a
        failed handshake would show (the frontend only sets it on success).
        """
        loop = asyncio.get_running_loop()
        sock, peer = await asyncio.wait_for(loop.sock_accept(self.sock), STEP)
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        done: asyncio.Future[BaseException | None] = loop.create_future()
        handshakes: list[BaseException | None] = []

        def on_handshake(transport: TLSSocketTransport, err: BaseException | None) -> None:
            handshakes.append(err)
            if err is None and protocol is not None:
                transport.set_protocol(protocol)
                protocol.connection_made(transport)
            if not done.done():
                done.set_result(err)

        batch = EndOfTurn() if self.batched else None
        transport = wrap_accepted(context, sock, peer, loop, on_handshake, batch)
        if early and protocol is not None:
            transport.set_protocol(protocol)
        fd = transport.get_extra_info("socket").fileno()
        server = Server(transport, peer, fd, handshakes, done)
        transport.start()
        return server


# ---- blocking clients (run in a thread) ----------------------------------------------------


def tls_client(
    address: tuple[str, int],
    ca: Any,
    version: ssl.TLSVersion | None = None,
    *,
    rcvbuf: int | None = None,
) -> ssl.SSLSocket:
    """Connect and handshake. Ragged EOFs raise, so a clean close_notify is told apart."""
    context = client_context(ca)
    if version is not None:
        context.maximum_version = version
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(STEP)
        raw.connect(address)
        return context.wrap_socket(raw, server_hostname=HOSTNAME, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise


def read_to_end(sock: socket.socket, *, tls: bool = True) -> tuple[bytes, str]:
    """Everything until the end, and how it ended: close_notify (a clean TLS end), eof (a
    TCP end without close_notify), fin (the end when reading below TLS), reset."""
    chunks: list[bytes] = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), "close_notify" if tls else "fin"
            chunks.append(chunk)
    except ssl.SSLEOFError:
        return b"".join(chunks), "eof"  # a TCP end without close_notify
    except ConnectionResetError:
        return b"".join(chunks), "reset"


def wait_readable(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], STEP)
    return fd in readable


def payload_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def turns(count: int = 10) -> None:
    """Let the loop run a few iterations (callbacks scheduled with call_soon included)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def connect_thread_client(
    listener: Listener,
    context: ssl.SSLContext,
    ca: Any,
    protocol: asyncio.Protocol,
    **accept: Any,
) -> tuple[Server, ssl.SSLSocket]:
    server, client = await asyncio.gather(
        listener.accept(context, protocol, **accept),
        asyncio.to_thread(tls_client, listener.address, ca),
    )
    assert await server.handshake() is None
    return server, client


async def open_stream_client(
    listener: Listener, ca: Any, version: ssl.TLSVersion | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = client_context(ca)
    if version is not None:
        context.maximum_version = version
    return await asyncio.open_connection(
        *listener.address, ssl=context, server_hostname=HOSTNAME, ssl_shutdown_timeout=STEP
    )


async def close_stream(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), STEP)


VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, id="tls12"),
    pytest.param(ssl.TLSVersion.TLSv1_3, id="tls13"),
]


# ---- 1. handshake and a round trip ---------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_handshake_then_echo(
    harness: Harness,
    listener: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    version: ssl.TLSVersion,
) -> None:
    expected = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]

    async def scenario() -> None:
        proto = Recorder(echo=True)
        server, (reader, writer) = await asyncio.gather(
            listener.accept(server_context, proto), open_stream_client(listener, cert.ca, version)
        )
        assert await server.handshake() is None
        transport = server.transport
        assert server.handshakes == [None]
        # connection_made came once, after the handshake, with TLS already up
        assert proto.events == ["made"]
        assert proto.handshaking_at_made is False and not transport.handshaking
        assert proto.version_at_made == expected
        assert transport.get_protocol() is proto

        assert transport.get_extra_info("peername") == server.peer
        assert server.peer == writer.get_extra_info("sockname")
        assert transport.get_extra_info("sockname") == listener.address
        assert transport.get_extra_info("sslcontext") is server_context
        tls = transport.get_extra_info("ssl_object")
        assert tls is not None and tls.version() == expected
        cipher = transport.get_extra_info("cipher")
        assert cipher is not None and cipher[1] == expected
        assert transport.get_extra_info("no such thing", "fallback") == "fallback"

        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), STEP) == b"ping"
        transport.fail_handshake(TimeoutError("too late"))  # no-op once the handshake is done
        writer.write(b"second")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(6), STEP) == b"second"
        assert bytes(proto.data) == b"pingsecond"
        assert server.handshakes == [None] and not transport.is_closing()

        await close_stream(writer)
        assert await proto.wait_lost() is None
        assert proto.events == ["made", "data", "eof", "lost"]
        assert server.fd not in polled()

    harness.run(scenario())


def test_transport_surface(
    harness: Harness, listener: Listener, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    """What asyncio.Transport promises besides I/O: no half-close, buffer limits, reading."""

    async def scenario() -> None:
        proto = Recorder()
        server, client = await connect_thread_client(listener, server_context, cert.ca, proto)
        transport = server.transport
        try:
            assert transport.can_write_eof() is False
            with pytest.raises(NotImplementedError):
                transport.write_eof()
            assert transport.get_write_buffer_limits() == (LOW_WATER, HIGH_WATER)
            transport.set_write_buffer_limits(high=1000)
            assert transport.get_write_buffer_limits() == (250, 1000)
            transport.set_write_buffer_limits(low=100)
            assert transport.get_write_buffer_limits() == (100, 400)
            with pytest.raises(ValueError):
                transport.set_write_buffer_limits(high=10, low=20)
            assert transport.get_write_buffer_size() == 0
            assert transport.is_reading()
            transport.pause_reading()
            assert not transport.is_reading()
            transport.resume_reading()
            assert transport.is_reading()
            assert transport.get_extra_info("peercert") is None  # no client certificate
            transport.writelines([b"line ", bytearray(b"by "), memoryview(b"line")])
            transport.write(b"")  # nothing to send: not a record, not an error
            received = b""
            while len(received) < 12:
                received += await asyncio.to_thread(client.recv, 64)
            assert received == b"line by line"
        finally:
            transport.close()
            client.close()
        assert await proto.wait_lost() is None
        assert transport.is_closing() and not transport.is_reading()
        assert transport.get_extra_info("sockname", "gone") == "gone"

    harness.run(scenario())


# ---- 2. bulk both ways, write flow control -------------------------------------------------


def test_two_mib_each_way_with_write_flow_control(
    harness: Harness, listener: Listener, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    size = 2 * 1024 * 1024
    payload = payload_of(size, 2)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        proto = Recorder(echo=True, flow=True)
        # Small kernel buffers on both ends, so a client that does not read makes the
        # server's backlog pass the high-water mark long before 2 MiB.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await loop.sock_connect(sock, listener.address)
        server, (reader, writer) = await asyncio.gather(
            listener.accept(server_context, proto, sndbuf=SMALL_BUFFER),
            asyncio.open_connection(
                sock=sock,
                ssl=client_context(cert.ca),
                server_hostname=HOSTNAME,
                ssl_shutdown_timeout=STEP,
            ),
        )
        assert await server.handshake() is None
        transport = server.transport

        async def send() -> None:
            for start in range(0, size, 64 * 1024):
                writer.write(payload[start : start + 64 * 1024])
                await writer.drain()

        async def receive() -> bytes:
            await asyncio.wait_for(proto.paused_writing.wait(), STEP)  # read nothing before
            return await reader.readexactly(size)

        _, echoed = await asyncio.gather(send(), receive())
        assert digest(proto.data) == digest(payload)
        assert digest(echoed) == digest(payload)
        assert proto.flow_events[:2] == ["pause", "resume"]
        # strictly alternating, and writing is allowed again at the end
        assert proto.flow_events == ["pause", "resume"] * (len(proto.flow_events) // 2)
        assert transport.get_write_buffer_size() == 0
        assert transport.is_reading()

        await close_stream(writer)
        assert await proto.wait_lost() is None
        assert proto.events == ["made", "data", "eof", "lost"]

    harness.run(scenario())


# ---- 3. close(): flush, close_notify, connection_lost(None) --------------------------------

BIG = 4 * 1024 * 1024  # more than the kernel takes while the client does not read


def _held_client(
    address: tuple[str, int], ca: Any, go: threading.Event, version: ssl.TLSVersion | None = None
) -> tuple[bytes, str]:
    """Handshake, then read nothing until `go` (the server has written and ended)."""
    with tls_client(address, ca, version, rcvbuf=SMALL_BUFFER) as sock:
        go.wait(STEP)
        return read_to_end(sock)


@pytest.mark.parametrize("version", VERSIONS)
def test_close_sends_everything_then_close_notify(
    harness: Harness,
    listener: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    version: ssl.TLSVersion,
) -> None:
    payload = payload_of(BIG, 3)
    backlog: list[int] = []
    go = threading.Event()

    def write_then_close(transport: TLSSocketTransport) -> None:
        transport.write(payload)  # one write, far more than the socket takes at once
        backlog.append(transport.get_write_buffer_size())
        transport.close()
        assert transport.is_closing()
        go.set()

    async def scenario() -> None:
        proto = Recorder(on_made=write_then_close)
        server, (received, ending) = await asyncio.gather(
            listener.accept(server_context, proto),
            asyncio.to_thread(_held_client, listener.address, cert.ca, go, version),
        )
        assert backlog and backlog[0] > 0, "the test wanted close() to find a backlog"
        assert len(received) == len(payload) and digest(received) == digest(payload)
        assert ending == "close_notify"
        assert await proto.wait_lost() is None
        await turns()
        assert proto.events == ["made", "lost"]
        assert server.transport.get_write_buffer_size() == 0
        assert server.transport.get_extra_info("socket").fileno() == -1
        assert server.fd not in polled()

    harness.run(scenario())


def test_close_gives_up_on_a_client_that_stops_reading(
    harness: Harness,
    listener: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() with a backlog the client never takes: aborted at the shutdown deadline."""
    deadline = 0.3
    monkeypatch.setattr(tls_transport, "SHUTDOWN_TIMEOUT", deadline)
    go = threading.Event()
    closed_at: list[float] = []

    def write_then_close(transport: TLSSocketTransport) -> None:
        transport.write(payload_of(BIG, 5))
        assert transport.get_write_buffer_size() > 0
        transport.close()
        closed_at.append(asyncio.get_running_loop().time())

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        proto = Recorder(on_made=write_then_close)
        reading = asyncio.ensure_future(
            asyncio.to_thread(_held_client, listener.address, cert.ca, go)
        )
        try:
            server = await listener.accept(server_context, proto)
            assert await server.handshake() is None
            await asyncio.sleep(deadline / 3)
            assert proto.events == ["made"] and server.transport.is_closing()  # still flushing
            assert await proto.wait_lost() is None
            assert loop.time() - closed_at[0] >= deadline * 0.9
        finally:
            go.set()
        received, ending = await asyncio.wait_for(reading, STEP)
        assert ending in ("eof", "reset")  # cut short: no close_notify
        assert len(received) < BIG
        assert server.transport.get_extra_info("socket").fileno() == -1
        assert server.fd not in polled()

    harness.run(scenario())


def _outq(fd: int) -> int:
    """Bytes the kernel holds for sending (for a unix socket: the sndbuf accounting)."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0])


def test_close_on_a_full_socket_still_sends_close_notify(
    harness: Harness, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    """The kernel is full when close() comes (nothing in the transport's backlog).

    A unix socket pair, because its send accounting is exact (SIOCOUTQ is what send()
    checks): writes go in whole until the kernel holds its SO_SNDBUF, and stop right there.
    Over TCP the same happens when the last write of a backlog fills the socket (seen on
    a few percent of closes after a large write to a slow reader). `wrap_accepted` sets
    TCP_NODELAY, so the transport is built the way it builds it, minus that option.
    """
    chunk = b"z" * (16 * 1024)  # one TLS record per write

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server_sock, client_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        client_sock.settimeout(STEP)
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        server_sock.setblocking(False)
        tls = server_context.wrap_socket(
            server_sock, server_side=True, do_handshake_on_connect=False
        )
        proto = Recorder()
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def on_handshake(transport: TLSSocketTransport, err: BaseException | None) -> None:
            if err is None:
                transport.set_protocol(proto)
                proto.connection_made(transport)
            done.set_result(err)

        transport = TLSSocketTransport(loop, tls, "unix", on_handshake)
        fd = tls.fileno()
        sndbuf = tls.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        go = threading.Event()

        def client() -> tuple[bytes, str]:
            context = client_context(cert.ca)
            with context.wrap_socket(
                client_sock, server_hostname=HOSTNAME, suppress_ragged_eofs=False
            ) as sock:
                go.wait(STEP)
                return read_to_end(sock)

        reading = asyncio.ensure_future(asyncio.to_thread(client))
        try:
            transport.start()
            assert await asyncio.wait_for(done, STEP) is None
            written = 0
            for _ in range(1000):
                if _outq(fd) >= sndbuf:
                    break
                transport.write(chunk)
                written += len(chunk)
                assert transport.get_write_buffer_size() == 0  # the kernel took it whole
            assert _outq(fd) >= sndbuf  # full: the next send() gets EAGAIN
            transport.close()
        finally:
            go.set()
        received, ending = await asyncio.wait_for(reading, STEP)
        assert await proto.wait_lost() is None
        assert received == chunk * (written // len(chunk))
        assert ending == "close_notify"

    harness.run(scenario())


# ---- 4. abort() ----------------------------------------------------------------------------


def test_abort_ends_at_once_without_close_notify(
    harness: Harness, listener: Listener, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    payload = payload_of(BIG, 4)
    backlog: list[int] = []
    go = threading.Event()

    def write_then_abort(transport: TLSSocketTransport) -> None:
        transport.write(payload)
        backlog.append(transport.get_write_buffer_size())
        transport.abort()
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0  # the backlog is dropped
        go.set()

    async def scenario() -> None:
        proto = Recorder(on_made=write_then_abort)
        server, (received, ending) = await asyncio.gather(
            listener.accept(server_context, proto),
            asyncio.to_thread(_held_client, listener.address, cert.ca, go),
        )
        assert backlog and backlog[0] > 0
        # the connection ended, short of the payload and without a clean TLS end
        assert ending in ("eof", "reset")
        assert len(received) < len(payload) and payload.startswith(received)
        assert await proto.wait_lost() is None
        await turns()
        assert proto.events == ["made", "lost"]
        assert server.transport.get_extra_info("socket").fileno() == -1
        assert server.fd not in polled()

    harness.run(scenario())


# ---- 5. the client sends, then ends --------------------------------------------------------


@pytest.mark.parametrize("how", ["close_notify", "tcp_fin"])
def test_client_end_gives_data_eof_then_lost(
    harness: Harness,
    listener: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    how: str,
) -> None:
    payload = payload_of(100 * 1024, 5)

    async def scenario() -> None:
        proto = Recorder()

        def client() -> str:
            sock = tls_client(listener.address, cert.ca)
            try:
                sock.sendall(payload)
                if how == "close_notify":
                    # returns only once the server answered with its own close_notify
                    raw = sock.unwrap()
                    return read_to_end(raw, tls=False)[1]
                sock.shutdown(socket.SHUT_WR)  # a bare TCP end, no close_notify
                return read_to_end(sock, tls=False)[1]
            finally:
                sock.close()

        server, client_ending = await asyncio.gather(
            listener.accept(server_context, proto), asyncio.to_thread(client)
        )
        assert await server.handshake() is None
        assert await proto.wait_lost() is None
        assert bytes(proto.data) == payload
        assert proto.events == ["made", "data", "eof", "lost"]
        assert client_ending == "fin"  # the server closed the TCP connection too
        assert server.transport.is_closing()
        assert server.fd not in polled()

    harness.run(scenario())


# ---- 6. pause_reading / resume_reading -----------------------------------------------------


@pytest.mark.parametrize("when", ["connection_made", "first_data"])
def test_pause_reading_holds_records_until_resumed(
    harness: Harness,
    listener: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    when: str,
) -> None:
    chunks = [bytes([i]) * 1024 for i in range(50)]  # each record tells its place

    async def scenario() -> None:
        proto = Recorder(
            pause_on_made=when == "connection_made", pause_after_first=when == "first_data"
        )
        server, client = await connect_thread_client(listener, server_context, cert.ca, proto)
        transport = server.transport

        def send() -> None:
            for chunk in chunks:
                client.sendall(chunk)  # one TLS record each

        sending = asyncio.ensure_future(asyncio.to_thread(send))
        try:
            held = 0
            if when == "first_data":
                await proto.wait_bytes(1024)
                held = 1024
            # records are waiting in the kernel, yet the transport must not read them
            assert await asyncio.to_thread(wait_readable, server.fd)
            await turns()
            await asyncio.sleep(0.05)
            await turns()
            assert len(proto.data) == held and proto.chunks == held // 1024
            assert not transport.is_reading()
            assert server.fd not in polled()

            transport.resume_reading()
            assert transport.is_reading()
            await proto.wait_bytes(50 * 1024)
            await asyncio.wait_for(sending, STEP)
            assert bytes(proto.data) == b"".join(chunks)
        finally:
            transport.close()
            client.close()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sending, STEP)
        assert await proto.wait_lost() is None

    harness.run(scenario())


# ---- 7. a failed handshake -----------------------------------------------------------------


def test_plain_http_to_tls_fails_the_handshake(
    harness: Harness, listener: Listener, server_context: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        proto = Recorder()

        def client() -> tuple[bytes, str]:
            with socket.create_connection(listener.address, timeout=STEP) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
                return read_to_end(sock, tls=False)

        server, (received, ending) = await asyncio.gather(
            listener.accept(server_context, proto, early=True), asyncio.to_thread(client)
        )
        err = await server.handshake()
        assert isinstance(err, ssl.SSLError)
        assert server.handshakes == [err]
        assert ending in ("fin", "reset")  # the server closed the connection
        assert b"HTTP" not in received
        transport = server.transport
        assert not transport.handshaking and transport.is_closing()
        assert transport.get_extra_info("socket").fileno() == -1
        await turns()
        assert proto.events == []  # no connection_made, nor connection_lost
        assert server.handshakes == [err]
        assert server.fd not in polled()

    harness.run(scenario())


# ---- 8. abandoning a handshake -------------------------------------------------------------


@pytest.mark.parametrize("how", ["fail_handshake", "close", "abort"])
def test_abandoned_handshake(
    harness: Harness, listener: Listener, server_context: ssl.SSLContext, how: str
) -> None:
    async def scenario() -> None:
        proto = Recorder()
        client = socket.create_connection(listener.address, timeout=STEP)  # sends nothing
        try:
            server = await listener.accept(server_context, proto, early=True)
            transport = server.transport
            await turns()
            assert server.handshakes == [] and transport.handshaking
            assert not transport.is_closing()
            assert server.fd in polled()  # waiting for the ClientHello

            reason = TimeoutError("TLS handshake deadline passed")
            if how == "fail_handshake":
                transport.fail_handshake(reason)
                assert server.handshakes == [reason]
                assert server.handshakes[0] is reason
            elif how == "close":
                transport.close()
                assert len(server.handshakes) == 1
                assert isinstance(server.handshakes[0], ConnectionAbortedError)
            else:
                transport.abort()
                assert len(server.handshakes) == 1
                assert isinstance(server.handshakes[0], ConnectionAbortedError)
            # reported once, whatever follows
            transport.fail_handshake(TimeoutError("again"))
            transport.close()
            transport.abort()
            assert len(server.handshakes) == 1
            assert not transport.handshaking and transport.is_closing()
            assert transport.get_extra_info("socket").fileno() == -1
            assert server.fd not in polled()
            _, ending = await asyncio.to_thread(read_to_end, client, tls=False)
            assert ending in ("fin", "reset")
            await turns()
            assert proto.events == []
        finally:
            client.close()

    harness.run(scenario())


# ---- 9. a protocol callback that raises ----------------------------------------------------


class Exploding(Recorder):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self.error = RuntimeError(f"boom in {where}")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.where == "data_received":
            raise self.error

    def eof_received(self) -> bool | None:
        super().eof_received()
        if self.where == "eof_received":
            raise self.error
        return None


@pytest.mark.parametrize("where", ["data_received", "eof_received"])
def test_protocol_error_reaches_the_handler_and_aborts(
    harness: Harness,
    listener: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    where: str,
) -> None:
    async def scenario() -> None:
        proto = Exploding(where)

        def client() -> str:
            with tls_client(listener.address, cert.ca) as sock:
                sock.sendall(b"hello")
                if where == "eof_received":
                    sock.shutdown(socket.SHUT_WR)  # below TLS from here on
                    return read_to_end(sock, tls=False)[1]
                return read_to_end(sock)[1]

        server, ending = await asyncio.gather(
            listener.accept(server_context, proto), asyncio.to_thread(client)
        )
        assert await proto.wait_lost() is proto.error
        assert ending in ("eof", "fin", "reset")  # ended, and not with a clean close_notify
        errors = harness.take_errors()
        assert len(errors) == 1
        assert errors[0]["exception"] is proto.error
        assert where in errors[0]["message"]
        assert errors[0]["transport"] is server.transport
        assert errors[0]["protocol"] is proto
        expected = ["made", "data", "lost"]
        if where == "eof_received":
            expected = ["made", "data", "eof", "lost"]
        await turns()
        assert proto.events == expected
        assert server.transport.is_closing()
        assert server.transport.get_extra_info("socket").fileno() == -1
        assert server.fd not in polled()

    harness.run(scenario())


class PauseWritingFails(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.error = RuntimeError("boom in pause_writing")

    def pause_writing(self) -> None:
        super().pause_writing()
        raise self.error


def test_pause_writing_error_aborts_without_raising_from_write(
    harness: Harness,
    listener_at_once: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
) -> None:
    listener = listener_at_once
    go = threading.Event()
    raised: list[BaseException] = []

    def write_big(transport: TLSSocketTransport) -> None:
        try:
            transport.write(payload_of(BIG, 11))  # the socket fills: pause_writing()
        except BaseException as exc:
            raised.append(exc)
        finally:
            go.set()

    async def scenario() -> None:
        proto = PauseWritingFails()
        proto.on_made = write_big
        server, (_, ending) = await asyncio.gather(
            listener.accept(server_context, proto),
            asyncio.to_thread(_held_client, listener.address, cert.ca, go),
        )
        assert await proto.wait_lost() is proto.error
        errors = harness.take_errors()
        assert [e["exception"] for e in errors] == [proto.error]
        assert "pause_writing" in errors[0]["message"]
        assert ending in ("eof", "reset")
        assert server.fd not in polled()
        assert raised == []  # the protocol's write() call returns; the error went above

    harness.run(scenario())


# ---- 10. writes after the end --------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "close_with_backlog", "abort"])
def test_write_after_close_is_dropped(
    harness: Harness,
    listener_at_once: Listener,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    how: str,
) -> None:
    """Nothing written after close() or abort() reaches the client, and nothing raises.

    `close_with_backlog` writes after close() while the backlog is still going out (the
    transport is closing, not closed yet).
    """
    listener = listener_at_once
    before = payload_of(BIG, 10) if how == "close_with_backlog" else b"before"
    go = threading.Event()
    backlog: list[int] = []

    def write_end_write(transport: TLSSocketTransport) -> None:
        transport.write(before)
        backlog.append(transport.get_write_buffer_size())
        if how == "abort":
            transport.abort()
        else:
            transport.close()
        assert transport.is_closing()
        transport.write(b"after")  # ignored, no exception
        transport.writelines([b"more", b"after"])
        assert transport.get_write_buffer_size() == (0 if how == "abort" else backlog[0])
        transport.close()  # again: no second connection_lost
        if how != "close_with_backlog":
            transport.abort()
        go.set()

    async def scenario() -> None:
        proto = Recorder(on_made=write_end_write)
        server, (received, ending) = await asyncio.gather(
            listener.accept(server_context, proto),
            asyncio.to_thread(_held_client, listener.address, cert.ca, go),
        )
        if how == "abort":
            assert before.startswith(received) and ending in ("eof", "reset")
        else:
            assert (len(received), ending) == (len(before), "close_notify")
            assert digest(received) == digest(before)
        if how == "close_with_backlog":
            assert backlog[0] > 0
        assert await proto.wait_lost() is None
        await turns()
        assert proto.events == ["made", "lost"]
        assert server.transport.is_closing()
        assert server.transport.get_write_buffer_size() == 0

    harness.run(scenario())


# ---- writes held to the end of the loop's turn ---------------------------------------------


def _batched_scenario(
    harness: Harness,
    server_context: ssl.SSLContext,
    cert: CertFiles,
    act: Callable[[TLSSocketTransport], None],
) -> tuple[bytes, str, Recorder]:
    go = threading.Event()

    def on_made(transport: TLSSocketTransport) -> None:
        act(transport)
        asyncio.get_running_loop().call_soon(go.set)  # after the turn's held writes

    async def scenario() -> tuple[bytes, str, Recorder]:
        proto = Recorder(on_made=on_made)
        with Listener(batched=True) as listener:
            _, (received, ending) = await asyncio.gather(
                listener.accept(server_context, proto),
                asyncio.to_thread(_held_client, listener.address, cert.ca, go),
            )
        await proto.wait_lost()
        return received, ending, proto

    return harness.run(scenario())


def test_held_writes_go_out_together_in_order(
    harness: Harness, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    sizes: list[int] = []

    def act(transport: TLSSocketTransport) -> None:
        for part in (b"one ", b"two ", b"three"):
            transport.write(part)
            sizes.append(transport.get_write_buffer_size())  # held bytes count as buffered
        asyncio.get_running_loop().call_soon(transport.close)

    received, ending, proto = _batched_scenario(harness, server_context, cert, act)
    assert sizes == [4, 8, 13]
    assert (received, ending) == (b"one two three", "close_notify")
    assert proto.events == ["made", "lost"]


def test_close_in_the_same_turn_sends_the_held_bytes_first(
    harness: Harness, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    def act(transport: TLSSocketTransport) -> None:
        transport.write(b"last words")
        transport.close()

    received, ending, _ = _batched_scenario(harness, server_context, cert, act)
    assert (received, ending) == (b"last words", "close_notify")


def test_abort_in_the_same_turn_drops_the_held_bytes(
    harness: Harness, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    def act(transport: TLSSocketTransport) -> None:
        transport.write(b"never sent")
        transport.abort()
        assert transport.get_write_buffer_size() == 0

    received, ending, _ = _batched_scenario(harness, server_context, cert, act)
    assert received == b"" and ending in ("eof", "reset")


def test_end_of_turn_runs_every_call_in_order_even_after_a_failure(harness: Harness) -> None:
    async def scenario() -> list[str]:
        batch = EndOfTurn()
        calls: list[str] = []

        def fail(_: object) -> None:
            raise RuntimeError("one write failed")

        batch.later(calls.append, "first")
        batch.later(fail, None)
        batch.later(calls.append, "third")
        assert calls == []  # nothing before the turn ends
        await turns(2)
        batch.later(calls.append, "next turn")
        await turns(2)
        return calls

    assert harness.run(scenario()) == ["first", "third", "next turn"]
    errors = harness.take_errors()
    assert [str(e["exception"]) for e in errors] == ["one write failed"]


def test_holding_more_than_the_high_mark_pauses_the_writer_within_the_turn(
    harness: Harness, server_context: ssl.SSLContext, cert: CertFiles
) -> None:
    """A producer writing a lot in one turn hears pause_writing at once, not at the turn's
    end (what is held is bounded by the high mark, not by what the turn produced); once it
    is all on the socket, resume_writing follows."""
    seen: list[tuple[list[str], int]] = []
    part = b"h" * (HIGH_WATER // 4)

    def act(transport: TLSSocketTransport) -> None:
        proto = transport.get_protocol()
        assert isinstance(proto, Recorder)
        for _ in range(5):
            transport.write(part)
            seen.append((list(proto.flow_events), transport.get_write_buffer_size()))
        asyncio.get_running_loop().call_soon(transport.close)

    received, ending, proto = _batched_scenario(harness, server_context, cert, act)
    assert [events for events, _ in seen] == [[], [], [], [], ["pause"]]
    assert [size for _, size in seen] == [len(part) * n for n in range(1, 6)]
    assert (len(received), ending) == (5 * len(part), "close_notify")
    assert proto.flow_events[:2] == ["pause", "resume"]
