"""The asyncio adapter of the layer 7 front: one `ClientSession` per accepted connection.

Theory of operation. The session pulls events from `RequestReader` (strict parsing, see
`http_front.py`) and for each request head either answers it itself (redirect,
400/408/414/431 refusals, 502/504 with the reason logged) or hands it to the node side
(`exchange.NodeExchange`, mixed in). Bodies are never buffered whole: writes wait for the
peer once more than a little is queued.

Timeouts: the head of a request must arrive within `header_timeout` of its first byte
(of the connection, for the first request) or the client gets 408; a keep-alive client may
idle `keepalive_timeout` between requests; reads and writes on an exchange may idle
`http_timeout` (1800 s for Rancher); a node that does not answer in `http_timeout` gives 504.
A drain (`closing`) lets the exchange in progress finish with `Connection: close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from rke2ha.lb.l7 import accesslog
from rke2ha.lb.l7.accesslog import AccessRecord, Peer
from rke2ha.lb.l7.backend_conns import READ_SIZE, BackendPool
from rke2ha.lb.l7.deadline import read_within
from rke2ha.lb.l7.exchange import (
    ClientGone,
    ExchangeFailed,
    FrontStats,
    NodeExchange,
    ProxySettings,
)
from rke2ha.lb.l7.fast import FastClientProtocol, FastPath
from rke2ha.lb.l7.http_front import (
    Event,
    Rejected,
    RequestEnd,
    RequestHead,
    RequestReader,
)
from rke2ha.lb.l7.nodes import NodeSet
from rke2ha.lb.l7.pages import error_response
from rke2ha.lb.l7.redirect import RedirectPolicy, passes_through, redirect_response

__all__ = ["ClientSession", "FrontStats", "ProxySettings"]

log = logging.getLogger("rke2ha.lb.l7")

_DRAIN_ABOVE = 64 * 1024  # bytes queued to the client before a write waits for it to read


class ClientSession(FastPath, NodeExchange):
    def __init__(
        self,
        settings: ProxySettings,
        nodes: NodeSet,
        pool: BackendPool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stats: FrontStats | None = None,
        frontend: str = "-",
    ) -> None:
        self.stats = stats
        self.backend: object = None  # the node's pool entry while an exchange runs on it
        self.settings = settings
        self.nodes = nodes
        self.pool = pool
        self.reader = reader
        self.writer = writer
        self.client_transport = writer.transport
        peer = writer.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else "-"
        self.client_ip_bytes = self.client_ip.encode("ascii", "replace")
        self.peer = Peer(self.client_ip, int(peer[1]) if peer else 0, frontend)
        affinity = settings.affinity
        self.front = RequestReader(
            settings.limits, cookie_name=affinity.name if affinity is not None else None
        )
        self._events: deque[Event] = deque()
        self._client_eof = False
        self.busy = False  # inside an exchange (a drain waits for it; an idle one is cut)
        self.closing = False  # set by a drain: the exchange in progress is the last one
        self._fast_init()
        proto = writer.transport.get_protocol()
        if isinstance(proto, FastClientProtocol):
            proto.session = self

    # ---- reading the client -------------------------------------------------------------

    async def _fill(self, timeout: float) -> None:
        """Read once from the client and queue the events; TimeoutError when none came."""
        try:
            data = await read_within(self.reader, READ_SIZE, timeout)
        except TimeoutError:
            raise  # an OSError too, but the caller's to judge (408 or a quiet close)
        except (ConnectionError, OSError) as err:
            raise ClientGone(str(err)) from None
        if not data:
            self._client_eof = True
        self._events.extend(self.front.feed(data))

    async def _next_head(self, first: bool) -> RequestHead | Rejected | None:
        """The next request head (or refusal); None when the client is gone or idled out."""
        deadline: float | None = None
        if first:  # the callbacks started the first head's clock at accept
            late = self.first_deadline_passed
            deadline = time.monotonic() + (0.0 if late else self.settings.header_timeout)
        while True:
            if self._events:
                event = self._events.popleft()
                if isinstance(event, RequestHead | Rejected):
                    return event
                continue  # a stray body event of an abandoned request
            if self._client_eof:
                return None
            if self.closing and not self.front.in_head:
                return None  # a drain: no new request is started on this connection
            if self._fast_seq and not self.front.in_head:
                deadline = None  # served requests since: the first-head deadline is past
            if deadline is None and self.front.in_head:
                deadline = time.monotonic() + self.settings.header_timeout
            timeout = (
                self.settings.keepalive_timeout
                if deadline is None
                else max(0.0, deadline - time.monotonic())
            )
            try:
                if self._can_park():
                    await self._park(timeout)
                else:
                    await self._fill(timeout)
            except TimeoutError:
                # A connection that sent nothing is closed quietly (browsers pre-connect);
                # one that started a head and stalled is told why.
                if self.front.in_head:
                    limit = self.settings.header_timeout
                    return Rejected(408, f"request head not complete in {limit:g}s")
                return None

    async def _next_body_event(self) -> Event:
        while not self._events:
            if self._client_eof:
                raise ClientGone("client closed the connection mid-body")
            try:
                await self._fill(self.settings.http_timeout)
            except TimeoutError:
                raise ClientGone(
                    f"client sent no body bytes for {self.settings.http_timeout:g}s"
                ) from None
        return self._events.popleft()

    # ---- writing the client -------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        writer = self.writer
        writer.write(data)
        if writer.transport.get_write_buffer_size() < _DRAIN_ABOVE:
            return  # the common case: no need to set up a timeout for a drain that won't wait
        try:
            async with asyncio.timeout(self.settings.http_timeout):
                await self.writer.drain()
        except TimeoutError:
            raise ClientGone("client did not read for http_timeout") from None
        except (ConnectionError, OSError) as err:
            raise ClientGone(str(err)) from None

    # ---- the session --------------------------------------------------------------------

    async def run(self) -> None:
        first = True
        try:
            while True:
                head = await self._next_head(first)
                first = False
                if head is None:
                    return
                if isinstance(head, Rejected):
                    await self._refuse(head)
                    return
                self.busy = True
                keep = await self._exchange(head)
                self.busy = False
                if not keep or self.closing:
                    return
        except ClientGone as err:
            log.debug("client %s gone: %s", self.client_ip, err)
        except (ConnectionError, OSError) as err:
            log.debug("client %s: %s", self.client_ip, err)
        except Exception:  # a bug must cost one connection, never the process
            log.exception("internal error serving %s; connection closed", self.client_ip)
        finally:
            self.writer.close()

    async def _refuse(self, rejected: Rejected) -> None:
        record = AccessRecord(self.peer, started=time.monotonic())
        record.status = rejected.status
        record.reason = rejected.reason
        log.info("refused request from %s: %d %s", self.client_ip, rejected.status, rejected.reason)
        with contextlib.suppress(ClientGone):
            response = error_response(rejected.status)
            await self._send(response)
            record.bytes = len(response)
        accesslog.emit(self.settings.access_log, record)
        if self.stats is not None:
            self.stats.bytes_down += record.bytes

    async def _exchange(self, head: RequestHead) -> bool:
        """Serve one request; True when the client connection may carry another."""
        record = AccessRecord(self.peer, head.method, head.target, started=time.monotonic())
        keep = head.keep_alive and not self.closing
        try:
            redirect = self.settings.redirect
            if redirect is not None and not passes_through(redirect, head.target):
                keep = await self._redirect(head, redirect, record)
            else:
                keep = await self._proxy(head, record)
        except ExchangeFailed as failure:
            record.status = failure.status
            record.reason = failure.reason
            log.warning(
                "%d for %s %s from %s: %s",
                failure.status,
                head.method,
                record.path,
                self.client_ip,
                failure.reason,
            )
            if record.bytes == 0:
                response = error_response(failure.status)
                with contextlib.suppress(ClientGone):
                    await self._send(response)
                    record.bytes = len(response)
            keep = False
        finally:
            accesslog.emit(self.settings.access_log, record)
            stats = self.stats
            if stats is not None:
                stats.bytes_down += record.bytes
                stats.retries += record.retries
                if record.retries:
                    stats.failovers += 1
                if record.status in (502, 504):
                    stats.failed += 1
        return keep

    async def _redirect(
        self, head: RequestHead, policy: RedirectPolicy, record: AccessRecord
    ) -> bool:
        # A body would have to be read and thrown away to keep the connection; close instead.
        keep = head.keep_alive and not head.has_body and head.upgrade is None and not self.closing
        response = redirect_response(policy, head.target, keep_alive=keep)
        record.status = policy.code
        await self._send(response)
        record.bytes = len(response)
        if keep:
            event = await self._next_body_event()
            keep = isinstance(event, RequestEnd)
        return keep

    # ---- proxying -----------------------------------------------------------------------
