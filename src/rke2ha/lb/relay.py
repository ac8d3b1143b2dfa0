"""The byte relay between a client and a backend socket: zero-copy splice, or buffered copy.

Two ways to move bytes behind one class (the way uvicorn swaps its httptools and h11
protocols), chosen per direction:

- **splice** (Linux): bytes go socket -> pipe -> socket with `os.splice`, never entering
  Python. Pipes come from a bounded `PipePool` and are held only while bytes sit in them
  (the destination is slow); an idle connection holds no pipe. A process may hold at most
  20,000 descriptors here, so one pipe pair per connection (two more fds each) would cap
  us at a third of the connections.
- **copy**: `recv_into` a shared scratch buffer, `send`; a partial send keeps only the
  unsent tail. Used off Linux, with `relay=copy`, or when the pipe pool is exhausted.

With `relay=auto` (the default) a direction starts by copying and switches to splice once
a read fills `BULK` bytes, and back when splices get small (HAProxy's `splice-auto` idea):
request/response traffic avoids the pipe round trip, bulk transfers avoid the copies.

Readiness comes from `add_reader`/`add_writer` on the raw descriptors (no asyncio
transports: they would read into Python memory), through the frontend's `poller.Poller`
(or an event loop itself, which offers the same calls). A direction stops reading its
source while its destination is full, which is back-pressure to the sender's TCP window.

Half-close: EOF on one side becomes `shutdown(SHUT_WR)` on the other (the FIN is passed
on) and the other direction keeps flowing; the pair closes when both directions ended.
A reset or error on either side closes both. Idle timeouts are enforced by the frontend's
sweeper, which reads `activity` (a counter, cheaper than re-arming a timer per read).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Callable

from rke2ha.lb.poller import Readiness

SPLICE_AVAILABLE = sys.platform == "linux" and hasattr(os, "splice")
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1024 * 1024
CHUNK = PIPE_SIZE
COPY_CHUNK = 256 * 1024
BULK = 64 * 1024  # a read this large switches a direction to splice (relay=auto)
SMALL = 16 * 1024  # a splice smaller than this switches it back to copying
# Chunks moved per readiness callback before yielding to other connections.
_BURST = 4
_SCRATCH = bytearray(COPY_CHUNK)
_SCRATCH_VIEW = memoryview(_SCRATCH)
_RESET_ERRORS = (ConnectionError, TimeoutError)


class PipePool:
    """At most `limit` pipes, reused; a pipe is borrowed only while bytes are in it."""

    def __init__(self, limit: int, size: int = PIPE_SIZE) -> None:
        self.limit = limit
        self.size = size
        self.created = 0
        self.exhausted = 0  # times a chunk fell back to copying because none was free
        self._free: list[tuple[int, int]] = []

    @property
    def in_use(self) -> int:
        return self.created - len(self._free)

    def acquire(self) -> tuple[int, int] | None:
        if self._free:
            return self._free.pop()
        if self.created >= self.limit:
            self.exhausted += 1
            return None
        try:
            read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # out of descriptors (EMFILE/ENFILE): the caller copies instead
            self.exhausted += 1
            return None
        # Over the per-user pipe quota the kernel refuses: keep the default 64 KiB then.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, self.size)
        self.created += 1
        return read_end, write_end

    def release(self, pipe: tuple[int, int]) -> None:
        """Return an *empty* pipe for reuse."""
        self._free.append(pipe)

    def discard(self, pipe: tuple[int, int]) -> None:
        """Close a pipe that may still hold bytes (its connection died)."""
        os.close(pipe[0])
        os.close(pipe[1])
        self.created -= 1

    def close(self) -> None:
        for pipe in self._free:
            os.close(pipe[0])
            os.close(pipe[1])
        self.created -= len(self._free)
        self._free.clear()


class _Pump:
    """One direction: bytes from `src` to `dst`."""

    __slots__ = (
        "buffer",
        "bulk",
        "bytes",
        "done",
        "dst",
        "dst_fd",
        "pending",
        "pipe",
        "reading",
        "relay",
        "side",
        "src",
        "src_fd",
        "writing",
    )

    def __init__(self, relay: Relay, src: socket.socket, dst: socket.socket, side: str) -> None:
        self.relay = relay
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.side = side  # who sends on `src`: "client" or "backend"
        self.pipe: tuple[int, int] | None = None
        self.pending = 0  # bytes in `pipe` not yet written to dst
        self.buffer: bytes = b""  # copy mode: the unsent tail
        self.bytes = 0
        # Splice pays off for bulk transfers; small request/response traffic is cheaper
        # through the scratch buffer (no pipe round trip). `auto` switches per direction.
        self.bulk = not relay.adaptive
        self.reading = self.writing = self.done = False

    # ---- readiness callbacks -----------------------------------------------------------

    def on_readable(self) -> None:
        relay = self.relay
        relay.activity += 1
        pipes = relay.pipes
        for _ in range(_BURST):
            if self.bulk and pipes is not None:
                pipe = pipes.acquire()
                moved = self._splice_in(pipe) if pipe is not None else self._copy_in()
                if moved < SMALL and relay.adaptive:
                    self.bulk = False
            else:
                moved = self._copy_in()
                if moved >= BULK and pipes is not None:
                    self.bulk = True
            if moved < COPY_CHUNK or not self.reading:
                return

    def on_writable(self) -> None:
        self.relay.activity += 1
        if self.pipe is not None:
            self._flush_pipe()
        else:
            self._flush_buffer()

    # ---- splice ------------------------------------------------------------------------

    def _splice_in(self, pipe: tuple[int, int]) -> int:
        pipes = self.relay.pipes
        assert pipes is not None
        try:
            moved = os.splice(self.src_fd, pipe[1], CHUNK, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            pipes.release(pipe)
            return 0
        except OSError as err:
            pipes.release(pipe)
            self._failed(err, self.side)
            return 0
        if moved == 0:
            pipes.release(pipe)
            self._eof()
            return 0
        self.bytes += moved
        self.pipe, self.pending = pipe, moved
        self._flush_pipe()
        return moved

    def _flush_pipe(self) -> None:
        pipe = self.pipe
        assert pipe is not None
        while self.pending:
            try:
                self.pending -= os.splice(pipe[0], self.dst_fd, self.pending, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                self._wait_writable()
                return
            except OSError as err:
                self._failed(err, _other(self.side))
                return
        self.pipe = None
        pipes = self.relay.pipes
        assert pipes is not None
        pipes.release(pipe)
        self._resume_reading()

    # ---- copy --------------------------------------------------------------------------

    def _copy_in(self) -> int:
        try:
            received = self.src.recv_into(_SCRATCH)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as err:
            self._failed(err, self.side)
            return 0
        if received == 0:
            self._eof()
            return 0
        self.bytes += received
        try:
            sent = self.dst.send(_SCRATCH_VIEW[:received])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as err:
            self._failed(err, _other(self.side))
            return 0
        if sent < received:
            self.buffer = bytes(_SCRATCH_VIEW[sent:received])
            self._wait_writable()
        return received

    def _flush_buffer(self) -> None:
        try:
            sent = self.dst.send(self.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._failed(err, _other(self.side))
            return
        self.buffer = self.buffer[sent:]
        if not self.buffer:
            self._resume_reading()

    # ---- state -------------------------------------------------------------------------

    def start(self) -> None:
        self.reading = True
        self.relay.readiness.add_reader(self.src_fd, self.on_readable)

    def _wait_writable(self) -> None:
        readiness = self.relay.readiness
        if self.reading:
            self.reading = False
            readiness.remove_reader(self.src_fd)
        if not self.writing:
            self.writing = True
            readiness.add_writer(self.dst_fd, self.on_writable)

    def _resume_reading(self) -> None:
        readiness = self.relay.readiness
        if self.writing:
            self.writing = False
            readiness.remove_writer(self.dst_fd)
        if not self.reading and not self.done:
            self.reading = True
            readiness.add_reader(self.src_fd, self.on_readable)

    def _eof(self) -> None:
        """`src` sent FIN: pass it on; the other direction keeps flowing."""
        self.stop()
        self.done = True
        relay = self.relay
        if relay.up.done and relay.down.done:
            relay.pump_finished()  # both sides sent FIN: close, no shutdown needed
            return
        # If the destination is already gone, its own pump notices and closes the pair.
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)
        relay.pump_finished()

    def _failed(self, err: OSError, side: str) -> None:
        if isinstance(err, _RESET_ERRORS) or err.errno in (errno.ECONNRESET, errno.EPIPE):
            self.relay.abort(f"{side}-reset")
        else:
            self.relay.abort(f"{side}-error: {err.strerror or err}")

    def stop(self) -> None:
        readiness = self.relay.readiness
        if self.reading:
            self.reading = False
            readiness.remove_reader(self.src_fd)
        if self.writing:
            self.writing = False
            readiness.remove_writer(self.dst_fd)

    def release(self) -> None:
        self.stop()
        if self.pipe is not None:
            pipes = self.relay.pipes
            assert pipes is not None
            pipes.discard(self.pipe)
            self.pipe = None
        self.buffer = b""


def _other(side: str) -> str:
    return "backend" if side == "client" else "client"


class Relay:
    """Both directions between `client` and `backend`; `on_close(relay)` runs once at the end."""

    __slots__ = (
        "activity",
        "adaptive",
        "backend",
        "client",
        "closed",
        "down",
        "on_close",
        "outcome",
        "pipes",
        "readiness",
        "up",
    )

    def __init__(
        self,
        readiness: Readiness,
        client: socket.socket,
        backend: socket.socket,
        pipes: PipePool | None,
        on_close: Callable[[Relay], None],
        adaptive: bool = True,
    ) -> None:
        self.readiness = readiness
        self.adaptive = adaptive
        self.client, self.backend = client, backend
        self.pipes = pipes
        self.on_close = on_close
        self.activity = 0
        self.closed = False
        self.outcome = "closed"
        self.up = _Pump(self, client, backend, "client")
        self.down = _Pump(self, backend, client, "backend")

    @property
    def bytes_up(self) -> int:
        return self.up.bytes

    @property
    def bytes_down(self) -> int:
        return self.down.bytes

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def pump_finished(self) -> None:
        if self.up.done and self.down.done:
            self._close("closed")

    def abort(self, outcome: str) -> None:
        """Close both sides now (reset, error, idle or drain timeout, shutdown)."""
        self._close(outcome)

    def _close(self, outcome: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.outcome = outcome
        self.up.release()
        self.down.release()
        self.client.close()
        self.backend.close()
        self.on_close(self)
