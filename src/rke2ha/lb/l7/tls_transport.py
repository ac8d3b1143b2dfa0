"""An asyncio transport for TLS on the socket itself: OpenSSL reads and writes the descriptor.

Why not the event loop's own TLS (`create_server(ssl=...)`): uvloop (like asyncio) runs
OpenSSL over memory buffers, so every handshake flight and every record passes through
Python-level buffer objects and a protocol state machine. Measured on the bench machine
with a minimal relay and nothing else changed (same certificate, wrk, HAProxy in the same
run): new TLS connections went from about 0.66x to 0.86x HAProxy with the socket-driven
`ssl.SSLSocket` below. So the frontend accepts itself, wraps each socket in an
`SSLSocket` that never blocks, and drives it from readiness callbacks (`add_reader`).

The transport follows asyncio's SSL transport where it matters to the code above it:
`connection_made` only after the handshake; no half-close (`can_write_eof` is False, and
an end of stream from the client closes the connection after `eof_received`); `close`
sends what is buffered, then a TLS close_notify, then closes; `abort` closes at once;
write flow control with `pause_writing`/`resume_writing` at the usual high/low marks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from rke2ha.lb.l7.end_of_turn import EndOfTurn

log = logging.getLogger("rke2ha.lb.l7")

# OpenSSL hands back at most one record (16 KiB of plaintext) per read.
RECORD_SIZE = 16 * 1024
# Reads per readiness callback before yielding to other connections; what OpenSSL has
# already taken off the socket is read on the next loop turn (no readiness will say so).
_READS_PER_TURN = 16
# How long close() waits for a client to take what is still buffered before it aborts
# (asyncio's own ssl_shutdown_timeout): a client that stopped reading must not keep the
# connection, its descriptor and its buffers for ever.
SHUTDOWN_TIMEOUT = 30.0
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024

HandshakeDone = Callable[["TLSSocketTransport", BaseException | None], None]


class _State(Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"  # close() called: flushing what is buffered, then close_notify
    CLOSED = "closed"


class TLSSocketTransport(asyncio.Transport):
    """One server-side TLS connection over a non-blocking `ssl.SSLSocket`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: ssl.SSLSocket,
        peername: Any,
        on_handshake: HandshakeDone,
        batch: EndOfTurn | None = None,
    ) -> None:
        super().__init__()
        # With a batch, writes are held to the end of the loop's turn and made as one
        # (`end_of_turn` says why); without, each write goes out at once.
        self._batch = batch
        self._held: list[bytes] = []
        self._held_size = 0
        self._loop = loop
        self._sock = sock
        # The C-level TLS object under `ssl.SSLSocket` (a private attribute, stable since
        # Python 3.7): reads and writes skip the Python wrappers of ssl.py, measurable per
        # request. The socket itself has the same read/write/pending calls, so it serves if
        # a later Python hides that object. Handshake, shutdown and accessors use `sock`.
        self._tls: Any = getattr(sock, "_sslobj", None) or sock
        self._fd = sock.fileno()
        self._peername = peername
        self._on_handshake = on_handshake
        self._protocol: asyncio.BaseProtocol | None = None
        self._state = _State.HANDSHAKE
        self._reading = False  # registered with add_reader
        self._writing = False  # registered with add_writer
        self._paused = False  # pause_reading() by the protocol
        self._read_wants_write = False  # OpenSSL needs to write before it can read on
        self._write_wants_read = False  # OpenSSL needs to read before it can write on
        self._shutdown_timer: asyncio.TimerHandle | None = None
        self._backlog: deque[bytes] = deque()  # the first one is mid-write when non-empty
        self._buffered = 0
        self._high = HIGH_WATER
        self._low = LOW_WATER
        self._protocol_paused = False
        self._lost_reported = False

    # ---- handshake -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin the handshake (the client's hello may already be waiting)."""
        self._add_reader()
        self._handshake_step()

    def fail_handshake(self, reason: BaseException) -> None:
        """Give up on a handshake still running (the frontend's deadline)."""
        if self._state is _State.HANDSHAKE:
            self._handshake_failed(reason)

    @property
    def handshaking(self) -> bool:
        return self._state is _State.HANDSHAKE

    def _handshake_step(self) -> None:
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._remove_writer()
            return
        except ssl.SSLWantWriteError:
            self._add_writer()
            return
        except (ssl.SSLError, OSError) as err:
            self._handshake_failed(err)
            return
        self._remove_writer()
        self._state = _State.OPEN
        try:
            self._on_handshake(self, None)  # sets the protocol and calls its connection_made
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")
            return
        if self._state is _State.OPEN and self._protocol is not None:
            self._read()  # application data may have come with the client's Finished

    def _handshake_failed(self, err: BaseException) -> None:
        log.debug("TLS handshake with %s failed: %s", self._peername, err)
        self._state = _State.CLOSED
        self._release()
        self._on_handshake(self, err)

    # ---- readiness callbacks ---------------------------------------------------------------

    def _on_readable(self) -> None:
        state = self._state
        if self._write_wants_read:
            self._write_wants_read = False
            self._flush()  # a write waited for OpenSSL to read (rare: see _flush)
            state = self._state
        if state is _State.OPEN:
            if self._paused:
                self._remove_reader()  # registered only for the write above
                return
            self._read()
        elif state is _State.HANDSHAKE:
            self._handshake_step()

    def _on_writable(self) -> None:
        state = self._state
        if state is _State.HANDSHAKE:
            self._handshake_step()
            return
        if self._backlog:
            self._flush()
        elif self._state is _State.CLOSING:
            self._remove_writer()
            self._shutdown()  # close_notify waited for room in the socket
        else:
            self._remove_writer()
        if self._read_wants_write and self._state is _State.OPEN:
            self._read_wants_write = False
            self._read()

    # ---- reading ---------------------------------------------------------------------------

    def _read(self) -> None:
        tls = self._tls
        protocol = self._protocol
        for _ in range(_READS_PER_TURN):
            if self._paused or self._state is not _State.OPEN:
                return
            try:
                data = tls.read(RECORD_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self._read_wants_write = True
                self._add_writer()
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""  # close_notify, or a TCP end without one: both end the stream
            except (ssl.SSLError, OSError) as err:
                self._fatal(err)
                return
            if not data:
                self._end_of_stream()
                return
            try:
                protocol.data_received(data)  # type: ignore[union-attr]
            except BaseException as exc:  # a bug above must not leave the descriptor polled
                self._protocol_failed(exc, "data_received")
                return
            if not tls.pending():
                # Nothing decrypted is waiting: the next readiness brings the rest (asking
                # OpenSSL again would cost an SSLWantReadError per request).
                return
        self._loop.call_soon(self._read)  # the rest on the next turn, after the others

    def _end_of_stream(self) -> None:
        # TLS has no half-close (nor has asyncio's SSL transport): the protocol hears of
        # the end, then the connection closes once what is buffered is sent.
        try:
            self._protocol.eof_received()  # type: ignore[union-attr]
        except BaseException as exc:
            self._protocol_failed(exc, "eof_received")
            return
        self.close()

    def pause_reading(self) -> None:
        if self._state is _State.OPEN and not self._paused:
            self._paused = True
            self._remove_reader()

    def resume_reading(self) -> None:
        if self._state is _State.OPEN and self._paused:
            self._paused = False
            self._add_reader()
            self._loop.call_soon(self._read)  # OpenSSL may hold a record already read

    def is_reading(self) -> bool:
        return self._state is _State.OPEN and not self._paused

    # ---- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state is not _State.OPEN or not data:
            return  # closing or closed: like asyncio, the bytes are dropped
        if self._backlog:
            self._queue(bytes(data))
            return
        batch = self._batch
        if batch is not None:
            held = self._held
            held.append(data if type(data) is bytes else bytes(data))  # a copy only if needed
            self._held_size += len(data)
            if len(held) == 1:
                batch.later(TLSSocketTransport._write_held, self)
            if not self._protocol_paused and self._buffered + self._held_size > self._high:
                self._pause_protocol()  # now, not at the end of the turn: bounded holding
            return
        self._write_now(data)

    def _write_held(self) -> None:
        held = self._held
        if not held:
            return  # written already (close) or dropped (abort)
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._held_size = 0
        if self._state is _State.OPEN:
            self._write_now(data)
            if self._protocol_paused and self._state is _State.OPEN:
                self._maybe_resume_protocol()  # paused while held, and all of it went out

    def _write_now(self, data: bytes | bytearray | memoryview) -> None:
        if self._backlog:
            self._queue(bytes(data))
            return
        try:
            self._tls.write(data)  # all of it, or nothing and SSLWantWrite (no partial mode)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            # OpenSSL requires the same bytes again once the socket takes more.
            self._queue(bytes(data))
            if self._state is _State.OPEN:  # pause_writing may have failed and closed it
                self._add_writer()
        except (ssl.SSLError, OSError) as err:
            self._fatal(err)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _queue(self, data: bytes) -> None:
        self._backlog.append(data)
        self._buffered += len(data)
        if not self._protocol_paused and self._buffered + self._held_size > self._high:
            self._pause_protocol()

    def _pause_protocol(self) -> None:
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()  # type: ignore[union-attr]
        except BaseException as exc:
            self._protocol_failed(exc, "pause_writing")

    def _maybe_resume_protocol(self) -> bool:
        """resume_writing once the buffer is down to the low mark; False: that failed."""
        if self._protocol_paused and self._buffered + self._held_size <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()  # type: ignore[union-attr]
            except BaseException as exc:
                self._protocol_failed(exc, "resume_writing")
                return False
        return True

    def _flush(self) -> None:
        backlog = self._backlog
        tls = self._tls
        while backlog:
            data = backlog[0]
            try:
                tls.write(data)
            except ssl.SSLWantWriteError:
                self._add_writer()
                return
            except ssl.SSLWantReadError:
                # OpenSSL must read first (not expected with renegotiation off, but allowed
                # by the API): the next readiness to read retries the flush.
                self._remove_writer()
                self._write_wants_read = True
                self._add_reader()
                return
            except BlockingIOError:
                self._add_writer()
                return
            except (ssl.SSLError, OSError) as err:
                self._fatal(err)
                return
            backlog.popleft()
            self._buffered -= len(data)
        self._remove_writer()
        if not self._maybe_resume_protocol():
            return
        if self._state is _State.CLOSING:
            self._shutdown()

    def get_write_buffer_size(self) -> int:
        return self._buffered + self._held_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    # ---- closing ---------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._state is not _State.OPEN and self._state is not _State.HANDSHAKE

    def close(self) -> None:
        """Send what is buffered, then close_notify, then close the socket."""
        if self._state is _State.HANDSHAKE:
            self._handshake_failed(ConnectionAbortedError("closed during the handshake"))
            return
        if self._state is not _State.OPEN:
            return
        self._write_held()  # what this turn wrote goes before the close
        if self._state is not _State.OPEN:
            return  # the write failed and closed the connection
        self._state = _State.CLOSING
        self._paused = True
        if self._backlog:
            if not self._write_wants_read:
                self._remove_reader()
            # _flush shuts down once the backlog is out, or the deadline aborts.
            self._shutdown_timer = self._loop.call_later(SHUTDOWN_TIMEOUT, self._shutdown_late)
            return
        self._shutdown()

    def _shutdown_late(self) -> None:
        self._shutdown_timer = None
        if self._state is _State.CLOSING:
            log.debug("%s did not take the rest of its data in time: aborted", self._peername)
            self._fatal(None)

    def abort(self) -> None:
        self._fatal(None)

    def _shutdown(self) -> None:
        # close_notify; the client's own is not awaited. A full socket waits for room (a
        # client that reads a body up to the close needs the close_notify to know it has it
        # all), bounded by the shutdown deadline; any other error means the client went first.
        try:
            self._sock.unwrap()
        except ssl.SSLWantWriteError:
            self._add_writer()
            if self._shutdown_timer is None:
                self._shutdown_timer = self._loop.call_later(SHUTDOWN_TIMEOUT, self._shutdown_late)
            return
        except (ssl.SSLError, OSError, ValueError):
            pass
        self._finish(None)

    def _fatal(self, exc: Exception | None) -> None:
        if self._state is _State.HANDSHAKE:
            self._handshake_failed(exc or ConnectionAbortedError("aborted"))
            return
        if self._state is _State.CLOSED:
            return
        if exc is not None:
            log.debug("TLS connection with %s failed: %s", self._peername, exc)
        self._finish(exc)

    def _protocol_failed(self, exc: BaseException, call: str) -> None:
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not ours to eat
            self._fatal(None)
            raise exc
        self._loop.call_exception_handler(
            {
                "message": f"Fatal error: protocol.{call}() call failed.",
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )
        self._fatal(exc)

    def _finish(self, exc: Exception | None) -> None:
        self._state = _State.CLOSED
        self._held.clear()
        self._held_size = 0
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        self._backlog.clear()
        self._buffered = 0
        self._release()
        if not self._lost_reported and self._protocol is not None:
            self._lost_reported = True
            self._loop.call_soon(self._protocol.connection_lost, exc)

    def _release(self) -> None:
        self._remove_reader()
        self._remove_writer()
        self._sock.close()

    # ---- registrations ---------------------------------------------------------------------

    def _add_reader(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def _remove_reader(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _add_writer(self) -> None:
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _remove_writer(self) -> None:
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)

    # ---- the rest of asyncio.Transport -----------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        if name in ("sslcontext",):
            return self._sock.context
        if name == "ssl_object":
            return self._sock
        if name == "socket":
            return self._sock
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        if name == "peercert":
            return self._sock.getpeercert() if self._state is _State.OPEN else default
        if name == "cipher":
            return self._sock.cipher()
        return default


def wrap_accepted(
    context: ssl.SSLContext,
    sock: socket.socket,
    peername: Any,
    loop: asyncio.AbstractEventLoop,
    on_handshake: HandshakeDone,
    batch: EndOfTurn | None = None,
) -> TLSSocketTransport:
    """A transport for a freshly accepted socket; the handshake starts with `start()`."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    return TLSSocketTransport(loop, tls, peername, on_handshake, batch)
