"""The callback fast path: a bodiless request on a pooled node connection, served without a task.

Why: awaiting a StreamReader in a task costs a future, a task step and a timer per read;
at keep-alive rates that glue was most of the proxy's CPU. While a client session's task is
parked between requests (`ClientSession._park`), the client protocol parses what arrives
itself (same strict `RequestReader`). When that is exactly one complete bodiless,
non-upgrade request and an idle keep-alive connection to the chosen node exists, the
request goes to the node and the response comes back to the client entirely in
`data_received` callbacks. Anything else (a body, an upgrade, a refusal, no idle
connection, a stale connection to retry) is queued for the parked task, which runs the
ordinary task-based exchange. The response itself is handled by `response.Response` on
both paths, so what the client gets, and whether a failed try may be repeated
(`retry.may_retry`), is decided in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rke2ha.lb.l7 import accesslog
from rke2ha.lb.l7.accesslog import AccessRecord, Peer
from rke2ha.lb.l7.backend_conns import BackendConnection, BackendPool
from rke2ha.lb.l7.end_of_turn import write_if_open
from rke2ha.lb.l7.http_front import Event, RequestEnd, RequestHead, RequestReader
from rke2ha.lb.l7.nodes import Node, NodeSet
from rke2ha.lb.l7.pages import error_response
from rke2ha.lb.l7.redirect import passes_through
from rke2ha.lb.l7.response import CUT, DONE, FAIL, MORE, RETRY, Response

log = logging.getLogger("rke2ha.lb.l7")


class FastClientProtocol(asyncio.StreamReaderProtocol):
    """The client's protocol: a StreamReaderProtocol that lets a parked session parse."""

    session: FastPath | None = None

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            super().data_received(data)
            return
        # Every byte from the client passes here once, whichever path then reads it.
        stats = session.stats
        if stats is not None:
            stats.bytes_up += len(data)
        if not session.fast_take(data):
            super().data_received(data)

    def eof_received(self) -> bool:
        session = self.session
        if session is not None:
            session.fast_client_eof()
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        session = self.session
        if session is not None:
            session.fast_client_lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        session = self.session
        if session is not None:
            session.fast_client_blocked()

    def resume_writing(self) -> None:
        super().resume_writing()
        session = self.session
        if session is not None:
            session.fast_client_writable()


class FastPath:
    """The callback half of `proxy.ClientSession` (see the module docstring)."""

    settings: Any  # exchange.ProxySettings (Any: avoids an import cycle for a type)
    nodes: NodeSet
    pool: BackendPool
    stats: Any
    backend: object
    busy: bool
    closing: bool
    client_ip: str
    peer: Peer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client_transport: asyncio.WriteTransport  # writer.transport (a property), kept
    front: RequestReader
    _events: deque[Event]
    _client_eof: bool
    _choose: Callable[[bytes | None, set[str]], Node | None]
    _carried_retry: tuple[str, str] | None
    _carried_node: Node | None
    _wire_head: Callable[[RequestHead], tuple[bytes | None, bytes]]

    def _fast_init(self) -> None:
        # No task runs until the callbacks need one (`_wake`): a connection whose requests
        # all take the callback path (short `Connection: close` clients above all) never
        # pays for a task, its future and its timer.
        self._task: asyncio.Task[None] | None = None
        self._first_timer: asyncio.TimerHandle | None = None
        self.on_done: Callable[[FastPath], None] | None = None
        self._done_reported = False
        self.first_deadline_passed = False
        self._parked: asyncio.Future[bool] | None = None
        self._fast_seq = 0
        self._fx: _Fast | None = None
        self._stash: list[bytes] = []
        # One timer per session watches every callback exchange's `http_timeout`: armed by
        # the first exchange and re-armed lazily when it fires (arming and cancelling a
        # timer for each request was a measurable share of the per-request cost).
        self._fx_timer: asyncio.TimerHandle | None = None
        # Between the client transport's pause_writing and resume_writing: an exchange that
        # starts meanwhile must not read its node (no second pause_writing will come).
        self._client_blocked = False

    # ---- the parked task ----------------------------------------------------------------

    def _can_park(self) -> bool:
        proto = self.writer.transport.get_protocol()
        return (
            isinstance(proto, FastClientProtocol)
            and proto.session is self
            and not self._events
            and not self._client_eof
            and not self.front.in_head
            and not getattr(self.reader, "_buffer", b"")  # bytes the task has yet to read
            and not self.reader.at_eof()
        )

    async def _park(self, timeout: float) -> None:
        """Wait for the protocol to queue events (or eof); TimeoutError when idle `timeout`."""
        loop = asyncio.get_running_loop()
        while True:
            seq = self._fast_seq
            fut: asyncio.Future[bool] = loop.create_future()
            self._parked = fut
            handle = loop.call_later(timeout, _settle, fut, False)
            try:
                woken = await fut
            finally:
                handle.cancel()
                self._parked = None
            if woken:
                return
            if self._fx is not None or self._fast_seq != seq:
                timeout = self.settings.keepalive_timeout  # served meanwhile: idle anew
                continue
            raise TimeoutError

    def _wake(self) -> None:
        if self._task is None:
            self._start_task()
            return
        fut = self._parked
        if fut is not None and not fut.done():
            fut.set_result(True)

    # ---- the task, started only when needed ---------------------------------------------

    async def run(self) -> None:
        raise NotImplementedError  # the task body (proxy.ClientSession.run)

    def start(self) -> None:
        """A new connection: callbacks serve it; the first head must come in header_timeout."""
        self._first_timer = asyncio.get_running_loop().call_later(
            self.settings.header_timeout, self._on_first_timer
        )

    def _on_first_timer(self) -> None:
        # Past the first-head deadline: the task takes over the clock (408 for a head still
        # incomplete, a quiet close for a silent client, keep-alive idling after requests).
        self._first_timer = None
        if self._task is None:
            self._start_task(first_deadline_passed=True)

    def _start_task(self, first_deadline_passed: bool = False) -> None:
        self._cancel_timers()
        if self._done_reported:
            return  # closed meanwhile (cancel, or the connection is gone): nothing to run
        if self._client_eof and not self._events and self._fx is None:
            self.writer.close()  # nothing to answer: no task needed to close
            self._report_done()
            return
        self.first_deadline_passed = first_deadline_passed
        self._task = asyncio.ensure_future(self.run())
        self._task.add_done_callback(lambda _: self._report_done())

    def cancel(self) -> None:
        """Stop this session now (a drain's idle sessions, or an admin close)."""
        if self._task is not None:
            self._task.cancel()  # its `finally` closes the connection
            return
        # What the task's cancellation amounts to: the exchange in flight (if any) is cut,
        # the connection closed (TLS close_notify first), and the session is over for the
        # frontend now, not when the client's goodbye arrives.
        self._cancel_timers()
        self._client_eof = True
        fx = self._fx
        if fx is not None:
            self._fast_finish(fx, reusable=False, reason="closed by the load balancer")
        self.writer.close()
        self._report_done()

    def _cancel_timers(self) -> None:
        if self._first_timer is not None:
            self._first_timer.cancel()
            self._first_timer = None
        if self._fx_timer is not None and self._fx is None:
            self._fx_timer.cancel()
            self._fx_timer = None

    def _report_done(self) -> None:
        if not self._done_reported:
            self._done_reported = True
            self._cancel_timers()
            if self.on_done is not None:
                self.on_done(self)

    # ---- the client protocol's calls ----------------------------------------------------

    def fast_take(self, data: bytes) -> bool:
        """True when `data` was taken here (served, queued or stashed), False: the reader's."""
        if self._fx is not None:
            self._stash.append(data)
            return True
        parked = self._parked
        if self._task is not None and (parked is None or parked.done()):
            return False  # the task runs (or is about to): it reads in order from the reader
        events = self.front.feed(data)
        if not self._fast_start(events) and (events or self._task is not None):
            self._events.extend(events)
            self._wake()
        return True

    def fast_client_eof(self) -> None:
        self._client_eof = True
        if self._fx is None:
            self._wake()

    def fast_client_lost(self) -> None:
        self._client_eof = True
        fx = self._fx
        if fx is not None:
            self._fast_finish(fx, reusable=False, reason="client gone")
        self._cancel_timers()
        if self._task is None:
            self._report_done()  # never needed a task: the connection is all there was
        else:
            self._wake()

    def fast_client_blocked(self) -> None:
        # The client reads slower than the node sends: stop reading the node until the
        # client's buffer drains (`fast_client_writable`).
        self._client_blocked = True
        fx = self._fx
        if fx is not None and not fx.paused:
            fx.paused = True
            _transport(fx.conn).pause_reading()

    def fast_client_writable(self) -> None:
        self._client_blocked = False
        fx = self._fx
        if fx is not None and fx.paused:
            fx.paused = False
            _transport(fx.conn).resume_reading()

    # ---- the exchange -------------------------------------------------------------------

    def _fast_start(self, events: list[Event]) -> bool:
        if len(events) != 2 or self.closing or not isinstance(events[1], RequestEnd):
            return False
        head = events[0]
        if (
            not isinstance(head, RequestHead)
            or head.chunked
            or head.content_length  # `has_body`, without a property call
            or head.upgrade is not None
        ):
            return False
        settings = self.settings
        redirect = settings.redirect
        if redirect is not None and not passes_through(redirect, head.target):
            return False
        token, wire_head = self._wire_head(head)
        if self._carried_node is None and (token is None or settings.affinity is None):
            node = self.nodes.pick()  # what `_choose` does then, without its calls
        else:
            node = self._choose(token, set())
        if node is None:
            return False
        conn = self.pool.take_idle(node)
        if conn is None or conn.proto is None:
            if conn is not None:
                self.pool.put(conn)
            self._carried_node = node
            return False
        self.nodes.begin(node)
        self.backend = node.ref
        self.busy = True
        self._fast_seq += 1
        now = time.monotonic()
        record = AccessRecord(self.peer, head.method, head.target, started=now)
        record.backend = node.id
        fx = _Fast(self, conn, node, head, token, record, now)
        self._fx = fx
        conn.response.expect(head.method)
        conn.reusable_after = False
        conn.proto.sink = fx.on_node
        if self._client_blocked:
            fx.paused = True
            _transport(conn).pause_reading()
        # Held to the end of the loop's turn with the turn's other writes (`end_of_turn`).
        self.pool.batch.later(write_if_open, (conn.transport, wire_head))
        conn.sent += len(wire_head)
        if self._fx_timer is None:
            self._fx_timer = asyncio.get_running_loop().call_later(
                self.settings.http_timeout, self._on_fx_timer
            )
        return True

    def _on_fx_timer(self) -> None:
        """The session's exchange timer: 504 (or an abort) once the node idled http_timeout."""
        self._fx_timer = None
        fx = self._fx
        if fx is None:
            return  # armed for an exchange that ended; the next one arms it again
        timeout = self.settings.http_timeout
        idle = time.monotonic() - fx.activity
        if idle < timeout:
            self._fx_timer = asyncio.get_running_loop().call_later(
                timeout - idle, self._on_fx_timer
            )
        elif fx.record.status:
            self._fast_finish(fx, reusable=False, reason="node stopped sending mid-response")
        else:
            self._fast_fail(fx, 504, f"{fx.conn.node.id} sent no response in {timeout:g}s")

    def _fast_finish(self, fx: _Fast, reusable: bool, reason: str | None = None) -> None:
        """End the exchange: give back or close the node connection, log, go on or close."""
        if self._fx is not fx:
            return
        self._fx = None
        conn = fx.conn
        proto = conn.proto
        received = 0
        if proto is not None:
            proto.sink = None
            received = proto.received  # the attribute, not conn.received: no call per request
        if fx.paused:
            _transport(conn).resume_reading()
        if reusable:
            self.pool.put(conn)
        else:
            conn.close()
        record = fx.record
        self.nodes.end(fx.node, received - fx.received, conn.sent - fx.sent)
        self.backend = None
        self.busy = False
        if reason is not None and record.reason is None:
            record.reason = reason
        accesslog.emit(self.settings.access_log, record)
        stats = self.stats
        if stats is not None:
            stats.bytes_down += record.bytes
            if record.status in (502, 504):
                stats.failed += 1
        if not fx.response.keep or self.closing or reason is not None:
            self.writer.transport.close()
            self._client_eof = True
            self._stash.clear()
            self._wake()
            return
        if self._client_eof:
            self._wake()
            return
        if self._stash:
            data = b"".join(self._stash)
            self._stash.clear()
            if not self.fast_take(data):
                self.reader.feed_data(data)

    def _fast_retry(self, fx: _Fast, reason: str) -> None:
        """A stale pooled connection closed before answering and `may_retry` allowed another
        try: the task makes it (and any further one)."""
        self._fx = None
        if fx.conn.proto is not None:
            fx.conn.proto.sink = None
        fx.conn.close()
        self.nodes.end(fx.node, fx.conn.received - fx.received, fx.conn.sent - fx.sent)
        self.backend = None
        self.busy = False
        self._carried_retry = (fx.node.id, reason)
        self._events.append(fx.head)
        self._events.append(RequestEnd())
        stash = b"".join(self._stash)
        self._stash.clear()
        if stash:
            self._events.extend(self.front.feed(stash))
        self._wake()

    def _fast_fail(self, fx: _Fast, status: int, reason: str) -> None:
        record = fx.record
        log.warning(
            "%d for %s %s from %s: %s", status, fx.head.method, record.path, self.client_ip, reason
        )
        if record.bytes == 0:
            record.status = status
            response = error_response(status)
            self.writer.transport.write(response)
            record.bytes = len(response)
        fx.response.keep = False
        self._fast_finish(fx, reusable=False, reason=reason)


def _transport(conn: BackendConnection) -> asyncio.Transport:
    return conn.transport


def _settle(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class _Fast:
    """The state of one callback exchange."""

    __slots__ = (
        "activity",
        "conn",
        "head",
        "node",
        "paused",
        "received",
        "record",
        "response",
        "sent",
        "sent_at",
        "session",
        "token",
    )

    def __init__(
        self,
        session: FastPath,
        conn: BackendConnection,
        node: Node,
        head: RequestHead,
        token: bytes | None,
        record: AccessRecord,
        sent_at: float,
    ) -> None:
        self.session = session
        self.conn = conn
        # The connection's counters before this exchange: the node's share is the growth.
        proto = conn.proto
        self.received = proto.received if proto is not None else 0
        self.sent = conn.sent
        self.node = node
        self.head = head
        self.token = token
        self.record = record
        self.sent_at = sent_at
        self.activity = sent_at
        self.response = Response(conn, head, token, record, session.settings.affinity)
        self.paused = False

    def on_node(self, data: bytes) -> None:
        """Bytes (b"" at the end) from the node: re-framed and written to the client."""
        session = self.session
        now = time.monotonic()
        self.activity = now
        events = self.conn.response.feed(data)
        step, out, detail = self.response.feed(events, now, self.sent_at, session.closing)
        if out:
            self._flush(out)
        if step == MORE:
            return
        if step == DONE:
            session._fast_finish(self, reusable=detail)
        elif step == RETRY:
            session._fast_retry(self, detail)
        elif step == CUT:
            session._fast_finish(self, reusable=False, reason=detail)
        elif step == FAIL:
            session._fast_fail(self, 502, detail)
        else:  # SWITCH: only an upgrade request is switched, and none takes this path
            session._fast_fail(self, 502, f"{self.conn.node.id}: switched protocols unasked")

    def _flush(self, out: list[bytes]) -> None:
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        session = self.session
        session.client_transport.write(data)  # a full buffer calls fast_client_blocked
        self.record.bytes += len(data)
