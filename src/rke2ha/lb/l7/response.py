"""One node response to one request, turned into what the client gets (sans-I/O).

Both ways a request is served call this: the task path (`exchange.NodeExchange`, which
awaits the node) and the callback path (`fast.FastPath`, which is fed in `data_received`).
`Response.feed` takes the events `http_back.ResponseParser` made of one read from the node
and returns the bytes for the client (head re-framed, body re-chunked where needed, the
affinity cookie added) and what happens next:

- `MORE`: the response goes on; read the node again.
- `DONE`: the response ended; `detail` tells whether the node connection can be reused.
- `RETRY`: the node closed before a byte of the response and `retry.may_retry` allows
  another node; `detail` is the reason.
- `FAIL`: the client gets a 502 instead of the response; `detail` is the reason.
- `CUT`: the node broke off after the head was sent; the client connection is closed.
- `SWITCH`: the node accepted the client's upgrade (101); `detail` is the head event.
"""

from __future__ import annotations

from typing import Any

from rke2ha.lb.l7.accesslog import AccessRecord
from rke2ha.lb.l7.affinity import AffinityCookie
from rke2ha.lb.l7.backend_conns import BackendConnection
from rke2ha.lb.l7.headers import CHUNKED_LINE, LAST_CHUNK, chunk, length_line, response_head
from rke2ha.lb.l7.http_back import (
    BadResponse,
    Interim,
    ResponseData,
    ResponseEnd,
    ResponseEvent,
    ResponseHead,
    Switched,
)
from rke2ha.lb.l7.http_front import RequestHead
from rke2ha.lb.l7.retry import Failure, may_retry

MORE, DONE, RETRY, FAIL, CUT, SWITCH = range(6)

_NO_BODY_STATUSES = (204, 304)  # never a body, whatever the framing says (RFC 9112 §6.3)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Response:
    """The state of one response being relayed (one per try of a request on a node)."""

    __slots__ = ("affinity", "bodiless", "conn", "keep", "rechunk", "record", "request", "token")

    def __init__(
        self,
        conn: BackendConnection,
        request: RequestHead,
        token: bytes | None,
        record: AccessRecord,
        affinity: AffinityCookie | None,
    ) -> None:
        self.conn = conn
        self.request = request
        self.token = token  # the client's affinity cookie, if it sent one
        self.record = record
        self.affinity = affinity
        self.keep = request.keep_alive
        self.bodiless = request.method == "HEAD"
        self.rechunk = False
        conn.reusable_after = False

    def feed(
        self, events: list[ResponseEvent], now: float, sent_at: float, closing: bool
    ) -> tuple[int, list[bytes], Any]:
        """(what next, bytes for the client in order, detail): see the module docstring.
        `closing`: the client connection ends after this response (a drain). With RETRY
        and FAIL no bytes are returned: what came before (a 100 Continue, an unasked 101
        head) is not the client's."""
        out: list[bytes] = []
        record = self.record
        conn = self.conn
        for event in events:
            if isinstance(event, ResponseData):
                if not self.bodiless:
                    out.append(chunk(event.data) if self.rechunk else event.data)
            elif isinstance(event, ResponseHead):
                record.upstream_s = now - sent_at
                record.status = event.status
                request = self.request
                if event.status == 101 and request.upgrade is not None:
                    return SWITCH, out, event
                self.bodiless = self.bodiless or event.status in _NO_BODY_STATUSES
                extra: list[tuple[bytes, bytes]] = []
                affinity = self.affinity
                if affinity is not None and self.token != affinity.token(conn.node.id):
                    extra.append(affinity.set_cookie(conn.node.id))
                # An upgrade refused: the client's next bytes are unknown. A drain: this
                # response is the connection's last.
                keep = self.keep and not closing and request.upgrade is None
                framing, self.rechunk, self.keep = response_framing(
                    event, request, self.bodiless, keep
                )
                out.append(
                    response_head(
                        event.status,
                        event.reason,
                        event.kept,
                        framing=framing,
                        keep_alive=self.keep,
                        extra=extra,
                    )
                )
            elif isinstance(event, Interim):
                if event.status == 100:
                    out.append(_CONTINUE)
            elif isinstance(event, ResponseEnd):
                if self.rechunk:
                    out.append(LAST_CHUNK)
                conn.reusable_after = event.reusable
                return DONE, out, event.reusable
            elif isinstance(event, BadResponse):
                if record.status:
                    return CUT, out, f"{conn.node.id}: {event.reason} (after the head)"
                request = self.request
                if may_retry(
                    Failure.CLOSED,
                    request.method,
                    reused=conn.reused,
                    response_started=conn.response.started,
                    has_body=request.has_body,
                ):
                    return RETRY, [], f"reused connection closed: {event.reason}"
                return FAIL, [], f"{conn.node.id}: {event.reason}"
            elif isinstance(event, Switched):
                return FAIL, [], f"{conn.node.id}: switched protocols unasked"
        return MORE, out, None


def response_framing(
    head: ResponseHead, request: RequestHead, bodiless: bool, keep: bool
) -> tuple[bytes, bool, bool]:
    """(the framing line for the client, re-chunk the body?, keep the client) for one
    response."""
    if bodiless:
        if head.content_length is not None and request.method == "HEAD":
            return length_line(head.content_length), False, keep
        return b"", False, keep
    if head.content_length is not None:
        return length_line(head.content_length), False, keep
    if request.version == "1.1":
        return CHUNKED_LINE, True, keep
    return b"", False, False  # an HTTP/1.0 client learns the end from the close
