"""Reading a node's responses (sans-I/O): bytes from the backend in, response events out.

One reader serves one backend connection, one request at a time (requests are never
pipelined to a node). The caller says which request the next response answers
(`expect(method)`), because a response to HEAD has no body whatever its Content-Length says
and llhttp cannot be told so through httptools: after the head of such a response the
reader reports the end and the connection is not reused. Interim 1xx responses (other
than 101) are reported as `Interim` and reading goes on to the final response.
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

from rke2ha.lb.l7.headers import scan_response


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunked: bool
    content_length: int | None
    kept: bytes = b""  # the end-to-end header lines a client receives (`scan_response`)

    @property
    def delimited(self) -> bool:
        """True when the body's end is known without the connection closing."""
        return self.chunked or self.content_length is not None


@dataclass(frozen=True, slots=True)
class Interim:
    status: int
    headers: list[tuple[bytes, bytes]]


@dataclass(slots=True)  # not frozen: one per read of a body, and frozen __init__ costs
class ResponseData:
    data: bytes


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    reusable: bool  # the backend connection may serve another request


@dataclass(frozen=True, slots=True)
class Switched:
    """101: from here on the connection carries the upgraded protocol; `tail` came with it."""

    tail: bytes


@dataclass(frozen=True, slots=True)
class BadResponse:
    reason: str


# Immutable: one instance each serves every response (made per response, they showed up).
_REUSABLE_END = ResponseEnd(reusable=True)
_FINAL_END = ResponseEnd(reusable=False)

ResponseEvent = ResponseHead | Interim | ResponseData | ResponseEnd | Switched | BadResponse

_NO_BODY_STATUSES = (204, 304)


class ResponseReader:
    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._events: list[ResponseEvent] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_only = False
        self._head: ResponseHead | None = None
        self._done = False
        self._in_head = True  # until expect(): a reader fed without it still reads a head
        self.started = False  # any byte of the response seen (retry decisions need it)

    def expect(self, method: str) -> None:
        """Prepare for the response to a `method` request on this connection."""
        # What llhttp's on_message_begin would reset, done here: one Python call fewer for
        # each response (an interim response resets them in on_headers_complete).
        self._headers = []
        self._in_head = True
        self._head_only = method == "HEAD"
        self._head = None
        self._done = False
        self.started = False

    def feed(self, data: bytes) -> list[ResponseEvent]:
        """Events completed by `data`; `b""` means the backend closed the connection."""
        events: list[ResponseEvent] = []
        self._events = events  # the callbacks append here
        if self._done:
            if data:
                events.append(BadResponse("bytes after the end of the response"))
            return events
        if not data:
            return self._eof()
        self.started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            events.append(Switched(data[int(upgrade.args[0]) :]))
            self._done = True
        except httptools.HttpParserError as err:
            events.append(BadResponse(f"malformed response: {err}"))
            self._done = True
        return events

    def _eof(self) -> list[ResponseEvent]:
        head = self._head
        if head is not None and not head.delimited and head.status not in _NO_BODY_STATUSES:
            self._events.append(ResponseEnd(reusable=False))  # body delimited by close
        elif head is None:
            self._events.append(BadResponse("backend closed the connection before answering"))
        else:
            self._events.append(BadResponse("backend closed the connection mid-response"))
        self._done = True
        return self._events

    # ---- httptools callbacks ------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # trailer fields after a chunked body are dropped
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        status = int(parser.get_status_code())
        reason, self._reason = self._reason, b""
        if 100 <= status < 200 and status != 101:
            self._events.append(Interim(status, self._headers))
            self._headers = []  # the final response's head follows
            self._in_head = True
            return
        kept, te, length, _ = scan_response(self._headers)
        head = ResponseHead(
            status,
            reason,
            self._headers,
            bool(parser.should_keep_alive()),
            te is not None and te.strip().lower().endswith(b"chunked"),
            int(length) if length is not None else None,
            kept,
        )
        self._head = head
        self._events.append(head)
        if self._head_only and status != 101:
            # No body follows; llhttp would wait for Content-Length bytes, so stop here and
            # retire the connection rather than trust the parser's state.
            self._events.append(ResponseEnd(reusable=False))
            self._done = True

    def on_body(self, body: bytes) -> None:
        if body and not self._done:
            self._events.append(ResponseData(body))

    def on_message_complete(self) -> None:
        head = self._head
        if head is None or self._done:
            return  # the end of an interim response
        self._events.append(_REUSABLE_END if head.keep_alive else _FINAL_END)
        self._done = True
