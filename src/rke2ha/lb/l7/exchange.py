"""One request on its way to a node and back: the half of a client session that talks to nodes.

`NodeExchange` is mixed into `proxy.ClientSession`, which owns the client side (reading
events, writing bytes, deadlines). Here: choosing the node (affinity, then balance),
borrowing a keep-alive connection, writing the re-serialised head, streaming the body up
in a task of its own while the response streams down (so a node that answers before it
read the whole body, or echoes while reading, cannot deadlock the hop), re-framing the
response for the client, switching to a tunnel on `101`, and trying another node when
`retry.may_retry` allows it (a failed connect; an idempotent request without a body on a
reused keep-alive connection the node closed before any response byte).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from rke2ha.lb.accesslog import AccessLog
from rke2ha.lb.config import HEADER_TIMEOUT, KEEPALIVE_TIMEOUT, SPEC_DEFAULTS
from rke2ha.lb.l7.accesslog import AccessRecord
from rke2ha.lb.l7.affinity import AffinityCookie
from rke2ha.lb.l7.backend_conns import READ_SIZE, BackendConnection, BackendPool, ConnectFailed
from rke2ha.lb.l7.deadline import read_within
from rke2ha.lb.l7.headers import (
    CHUNKED_LINE,
    LAST_CHUNK,
    chunk,
    forwarded_request_head,
    forwarded_suffix,
    length_line,
    upgraded_response_head,
)
from rke2ha.lb.l7.http_back import (
    ResponseEvent,
    ResponseHead,
    Switched,
)
from rke2ha.lb.l7.http_front import (
    BodyData,
    Event,
    FrontLimits,
    Rejected,
    RequestEnd,
    RequestHead,
    UpgradeTail,
)
from rke2ha.lb.l7.nodes import Node, NodeSet
from rke2ha.lb.l7.redirect import RedirectPolicy
from rke2ha.lb.l7.response import DONE, FAIL, MORE, RETRY, SWITCH, Response
from rke2ha.lb.l7.retry import Failure, may_retry
from rke2ha.lb.l7.tunnel import run_tunnel

log = logging.getLogger("rke2ha.lb.l7")


@dataclass
class ProxySettings:
    """How one listener proxies: what it tells the nodes, its deadlines, limits, extras."""

    forwarded_proto: str = "https"
    forwarded_port: int = 443
    header_timeout: float = HEADER_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    http_timeout: float = SPEC_DEFAULTS.http_timeout
    tunnel_timeout: float = SPEC_DEFAULTS.http_timeout
    retries: int = SPEC_DEFAULTS.retries
    limits: FrontLimits = field(default_factory=FrontLimits)
    affinity: AffinityCookie | None = None
    redirect: RedirectPolicy | None = None  # set on the port 80 front
    access_log: AccessLog | None = field(default=None, compare=False)  # the process's
    # X-Forwarded-Proto/Port as written to every node (made once from the two fields above).
    forwarded_suffix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.forwarded_suffix = forwarded_suffix(self.forwarded_proto, self.forwarded_port)


class FrontStats(Protocol):
    """The counters a frontend shows on the admin page (see `rke2ha.lb.frontend_api`)."""

    retries: int
    failovers: int
    failed: int
    bytes_up: int
    bytes_down: int


class ClientGone(Exception):
    """The client went away or stalled: nothing more can be said to it."""


class ExchangeFailed(Exception):
    """The exchange cannot go on; `status` is answered if nothing was sent yet."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Retry(Exception):
    """This try failed in a way another node may repeat safely (see the module docstring)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NodeExchange:
    """The node side of a client session (see the module docstring)."""

    settings: ProxySettings
    nodes: NodeSet
    pool: BackendPool
    stats: FrontStats | None
    backend: object
    closing: bool
    client_ip: str
    client_ip_bytes: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    _events: deque[Event]
    # (node id, reason) of a try the callback fast path made before handing the request
    # over: it counts as the first try, so the retry rules and the access log stay exact.
    _carried_retry: tuple[str, str] | None = None
    # The node the fast path chose before handing over (it had no idle connection): asking
    # the balancer again would advance its turn twice for one request.
    _carried_node: Node | None = None

    async def _send(self, data: bytes) -> None:
        raise NotImplementedError  # the client side (ClientSession) writes

    async def _next_body_event(self) -> Event:
        raise NotImplementedError  # the client side (ClientSession) reads

    def _choose(self, pinned_token: bytes | None, tried: set[str]) -> Node | None:
        carried = self._carried_node
        if carried is not None:
            self._carried_node = None
            if carried.id not in tried:
                return carried
        affinity = self.settings.affinity
        if not tried and (affinity is None or not pinned_token):
            return self.nodes.pick()  # the common case: no pin, nothing to avoid
        candidates = self.nodes.candidates(tried)
        if not candidates:
            return None
        if affinity is not None and pinned_token:
            pinned = affinity.pinned(pinned_token, [n.id for n in candidates])
            if pinned is not None:
                return next(n for n in candidates if n.id == pinned)
        return candidates[0]

    def _wire_head(self, head: RequestHead) -> tuple[bytes | None, bytes]:
        """(the affinity token, the head as sent to a node) for one request."""
        if head.chunked:
            framing = CHUNKED_LINE
        elif head.content_length is not None:
            framing = length_line(head.content_length)
        else:
            framing = b""
        scan = head.scan
        return scan.cookie_token, forwarded_request_head(
            head.method,
            head.target,
            scan.kept,
            forwarded_for=scan.forwarded_for,
            host=scan.host,
            client_ip=self.client_ip_bytes,
            suffix=self.settings.forwarded_suffix,
            framing=framing,
            upgrade=scan.upgrade if head.upgrade is not None else None,
        )

    async def _proxy(self, head: RequestHead, record: AccessRecord) -> bool:
        settings = self.settings
        token, wire_head = self._wire_head(head)
        tried: set[str] = set()
        reasons: list[str] = []
        first = 0
        carried = self._carried_retry
        if carried is not None:
            self._carried_retry = None
            tried.add(carried[0])
            reasons.append(f"{carried[0]}: {carried[1]}")
            first = 1
        if not head.has_body:
            await self._skip_to_end()  # once: a retry must not wait for a second end
        for attempt in range(first, settings.retries + 1):
            node = self._choose(token, tried)
            if node is None:
                break
            tried.add(node.id)
            record.backend = node.id
            record.retries = attempt
            try:
                conn = await self.pool.get(node)
            except ConnectFailed as err:
                self.nodes.failed(node, str(err))
                reasons.append(f"{node.id}: {err}")
                if may_retry(
                    Failure.CONNECT,
                    head.method,
                    reused=False,
                    response_started=False,
                    has_body=head.has_body,
                ):
                    continue
                break
            self.nodes.begin(node)
            self.backend = node.ref
            received, sent = conn.received, conn.sent  # a reused connection has counted before
            try:
                return await self._over(conn, head, wire_head, token, record)
            except Retry as retry:
                reasons.append(f"{node.id}: {retry.reason}")
                continue
            finally:
                self.nodes.end(node, conn.received - received, conn.sent - sent)
                self.backend = None
        if not reasons:
            raise ExchangeFailed(502, "no healthy node")
        raise ExchangeFailed(502, "; ".join(reasons))

    async def _over(
        self,
        conn: BackendConnection,
        head: RequestHead,
        wire_head: bytes,
        token: bytes | None,
        record: AccessRecord,
    ) -> bool:
        """One try of the request on `conn`; raises Retry when another node may try."""
        sent_at = time.monotonic()
        conn.response.expect(head.method)
        conn.write(wire_head)
        upload: asyncio.Task[None] | None = None
        if head.has_body:
            upload = asyncio.ensure_future(self._upload(conn, head, record))
        clean = False
        try:
            try:
                keep = await self._download(conn, head, token, record, sent_at)
            except ExchangeFailed:
                if upload is not None and upload.done() and upload.exception() is not None:
                    # The node saw a cut-off body because the client's side failed: say so.
                    if self._events and isinstance(self._events[0], Rejected):
                        refused = self._events.popleft()
                        assert isinstance(refused, Rejected)
                        raise ExchangeFailed(refused.status, refused.reason) from None
                    raise ClientGone(str(upload.exception())) from None
                raise
            if upload is not None:
                if not upload.done():
                    # The node answered before reading the whole body: the rest of it can
                    # no longer be told apart from a next request, so both sides close.
                    keep = False
                    upload.cancel()
                elif upload.exception() is not None:
                    keep = False
                else:
                    clean = True
            else:
                clean = True
            return keep
        finally:
            if upload is not None and not upload.done():
                upload.cancel()
                with contextlib.suppress(BaseException):
                    await upload
            if clean and conn.reusable_after:
                self.pool.put(conn)
            else:
                conn.close()

    async def _skip_to_end(self) -> None:
        event = await self._next_body_event()
        if not isinstance(event, RequestEnd):
            raise ExchangeFailed(400, f"unexpected {type(event).__name__} in a bodiless request")

    async def _upload(
        self, conn: BackendConnection, head: RequestHead, record: AccessRecord
    ) -> None:
        try:
            await self._upload_body(conn, head, record)
        except BaseException:
            conn.close()  # the node must not wait for the rest of a body that will not come
            raise

    async def _upload_body(
        self, conn: BackendConnection, head: RequestHead, record: AccessRecord
    ) -> None:
        writer = conn.writer
        while True:
            event = await self._next_body_event()
            if isinstance(event, BodyData):
                conn.write(chunk(event.data) if head.chunked else event.data)
                record.uploaded += len(event.data)
                async with asyncio.timeout(self.settings.http_timeout):
                    await writer.drain()
            elif isinstance(event, RequestEnd):
                if head.chunked:
                    conn.write(LAST_CHUNK)
                    await writer.drain()
                return
            elif isinstance(event, Rejected):
                self._events.appendleft(event)
                raise ClientGone(f"request body refused: {event.reason}")
            else:
                raise ClientGone(f"unexpected {type(event).__name__} in a request body")

    async def _backend_events(self, conn: BackendConnection) -> list[ResponseEvent]:
        try:
            data = await read_within(conn.reader, READ_SIZE, self.settings.http_timeout)
        except TimeoutError:
            raise  # an OSError too, but it means 504 (or a stalled node), not a close
        except (ConnectionError, OSError):
            data = b""
        return conn.response.feed(data)

    async def _download(
        self,
        conn: BackendConnection,
        head: RequestHead,
        token: bytes | None,
        record: AccessRecord,
        sent_at: float,
    ) -> bool:
        relay = Response(conn, head, token, record, self.settings.affinity)
        while True:
            try:
                events = await self._backend_events(conn)
            except TimeoutError:
                if record.status:
                    raise ClientGone("node stopped sending mid-response") from None
                raise ExchangeFailed(
                    504,
                    f"{conn.node.id} sent no response in {self.settings.http_timeout:g}s",
                ) from None
            # Everything one read of the node produced goes to the client in one write: a
            # small response is one TLS record and one syscall, not a head and a body.
            step, out, detail = relay.feed(events, time.monotonic(), sent_at, self.closing)
            if step == SWITCH:
                await self._switch(conn, detail, record, events)
                return False
            await self._flush(out, record)
            if step == MORE:
                continue
            if step == DONE:
                return relay.keep
            if step == RETRY:
                raise Retry(detail)
            if step == FAIL:
                raise ExchangeFailed(502, detail)
            raise ClientGone(detail)  # CUT

    async def _flush(self, out: list[bytes], record: AccessRecord) -> None:
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            await self._send(data)
            record.bytes += len(data)

    async def _switch(
        self,
        conn: BackendConnection,
        head: ResponseHead,
        record: AccessRecord,
        events: list[ResponseEvent],
    ) -> None:
        node_tail = b"".join(e.tail for e in events if isinstance(e, Switched))
        data = upgraded_response_head(head.status, head.reason, head.headers)
        await self._send(data)
        client_tail = b"".join(e.data for e in self._events if isinstance(e, UpgradeTail))
        self._events.clear()
        up, down, why = await run_tunnel(
            (self.reader, self.writer),
            (conn.reader, conn.writer),
            idle_timeout=self.settings.tunnel_timeout,
            client_tail=client_tail,
            node_tail=node_tail,
        )
        record.bytes += len(data) + down
        record.uploaded += up
        conn.sent += up  # the tunnel wrote to the node's writer itself
        log.debug(
            "tunnel %s <-> %s ended (%s): %d up, %d down",
            self.client_ip,
            conn.node.id,
            why,
            up,
            down,
        )
