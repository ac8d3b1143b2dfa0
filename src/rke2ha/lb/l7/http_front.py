"""Strict reading of client requests for the layer 7 front: bytes in, events out (sans-I/O).

Theory of operation. llhttp (through httptools) does the tokenising and already refuses most
ambiguous input with its default, non-lenient flags: bare CR or LF in the head, obs-fold,
NUL and other control bytes, a space before the colon, Content-Length together with
Transfer-Encoding, repeated Content-Length (even equal ones), malformed chunk sizes and
missing CRLF after chunk data. What llhttp lets through and this module refuses itself
(each one verified against the parser with raw bytes in tests/lb_l7/test_http_front.py):

- `Transfer-Encoding` other than exactly one `chunked` (llhttp accepts `gzip, chunked`);
- `Transfer-Encoding` on an HTTP/1.0 request (RFC 9112 §6.1: the framing is unreliable);
- a version other than HTTP/1.0 or 1.1 (llhttp accepts `HTTP/2.0` and HTTP/0.9 lines);
- no `Host`, or more than one `Host` (two readers could route it two ways);
- `CONNECT` (this is a reverse proxy, not a forward one);
- an upgrade request that also carries a body;
- a request target that is not a path (absolute-form names a host beside `Host`);
- limits: request target (414), header block (431). The header read deadline (408) is time,
  so the asyncio adapter owns it; this module only says whether a head is in progress.

Every refusal is a `Rejected` event; the caller answers it and closes the connection, and
nothing of the refused request reaches a backend: events of a request are released only
after its whole head passed every check. The request that follows a refused one is never
read. What goes to the backend is re-serialised from the parsed form (see `headers.py`),
never the client's raw bytes, so a backend never has to agree with us on how to read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools

from rke2ha.lb.l7.headers import RequestScan, scan_request

DEFAULT_MAX_TARGET = 8 * 1024
DEFAULT_MAX_HEAD = 32 * 1024
DEFAULT_MAX_HEADERS = 100


@dataclass(frozen=True, slots=True)
class FrontLimits:
    """Size limits of one request head (nginx's large_client_header_buffers, in spirit)."""

    max_target: int = DEFAULT_MAX_TARGET
    max_head: int = DEFAULT_MAX_HEAD
    max_headers: int = DEFAULT_MAX_HEADERS


@dataclass(slots=True)
class RequestHead:
    """A request head that passed every check; header names keep the client's spelling."""

    method: str
    target: bytes
    version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunked: bool
    content_length: int | None
    upgrade: bytes | None = None  # lower-cased Upgrade value when the client asks to switch
    # The one pass over the headers (`headers.scan_request`): the lines a node receives.
    scan: RequestScan = field(default_factory=RequestScan, compare=False)  # from `headers`

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (case-insensitive)."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


@dataclass(slots=True)  # not frozen: one per read of a body, and frozen __init__ costs
class BodyData:
    data: bytes


@dataclass(frozen=True, slots=True)
class RequestEnd:
    """The request (head and body) is complete."""


@dataclass(frozen=True, slots=True)
class UpgradeTail:
    """Bytes the client sent after an upgrade request: they belong to the new protocol."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int
    reason: str


Event = RequestHead | BodyData | RequestEnd | UpgradeTail | Rejected

_END = RequestEnd()  # immutable and field-less: one instance serves every request


class _Refuse(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestReader:
    """Feed it the bytes of one client connection; it returns the events they complete.

    After a `Rejected` or an `UpgradeTail` event the reader is finished: `feed` returns
    nothing more.
    """

    def __init__(
        self, limits: FrontLimits | None = None, *, cookie_name: bytes | None = None
    ) -> None:
        self.limits = limits or FrontLimits()
        self.cookie_name = cookie_name  # the affinity cookie, taken out of what nodes see
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        # The head being read (fields of the reader, not an object made for each request):
        self._in_head = False
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_fed = 0  # bytes fed while a head was incomplete (bounds llhttp's buffering)
        self._trailer_bytes = 0
        self._finished = False

    @property
    def in_head(self) -> bool:
        """True while a request head has started but is not complete (the 408 clock runs)."""
        return self._in_head

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, data: bytes) -> list[Event]:
        if self._finished:
            return []
        self._events = []
        if not data:
            if self._in_head:
                self._reject(400, "connection closed in the middle of a request head")
            return self._take()
        # Bytes of a feed that began inside a head all belong to that head; the feed that
        # starts a head may also carry the end of the previous request, so it is not counted
        # (the exact per-header accounting in on_header covers it).
        was_in_head = self._in_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = int(upgrade.args[0])
            self._events.append(UpgradeTail(data[offset:]))
            self._finished = True
        except httptools.HttpParserCallbackError as err:
            cause = err.__context__
            if isinstance(cause, _Refuse):
                self._reject(cause.status, cause.reason)
            else:  # a bug of ours must not look like the client's fault
                raise
        except httptools.HttpParserInvalidMethodError:
            self._reject(400, "invalid request method")
        except httptools.HttpParserInvalidURLError as err:
            self._reject(400, f"invalid request target: {err}")
        except httptools.HttpParserError as err:
            self._reject(400, f"malformed request: {err}")
        if not self._finished and self._in_head:
            if was_in_head:
                self._head_fed += len(data)
            if len(self._target) > self.limits.max_target:
                self._reject(414, f"request target longer than {self.limits.max_target} bytes")
            elif self._head_fed > self.limits.max_head:
                self._reject(431, f"request head longer than {self.limits.max_head} bytes")
        events = self._events
        self._events = []
        return events

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _reject(self, status: int, reason: str) -> None:
        # Events of the refused request are dropped: nothing of it may reach a backend.
        self._events = _complete_requests(self._events)
        self._events.append(Rejected(status, reason))
        self._finished = True
        self._in_head = False

    # ---- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._target = b""
        self._headers = []
        self._head_bytes = 0
        self._head_fed = 0
        self._trailer_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > self.limits.max_target:
            raise _Refuse(414, f"request target longer than {self.limits.max_target} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            # A trailer field after a chunked body: dropped (the body is re-framed without
            # trailers), but counted so an endless trailer section cannot grow memory.
            self._trailer_bytes += len(name) + len(value) + 4
            if self._trailer_bytes > self.limits.max_head:
                raise _Refuse(431, f"trailer section longer than {self.limits.max_head} bytes")
            return
        headers = self._headers
        headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if len(headers) > self.limits.max_headers:
            raise _Refuse(431, f"more than {self.limits.max_headers} header fields")
        if self._head_bytes + len(self._target) > self.limits.max_head:
            raise _Refuse(431, f"request head longer than {self.limits.max_head} bytes")

    def on_headers_complete(self) -> None:
        self._events.append(self._checked_head())
        self._in_head = False

    def on_body(self, body: bytes) -> None:
        if body:
            self._events.append(BodyData(body))

    def on_message_complete(self) -> None:
        self._events.append(_END)

    # ---- the checks llhttp leaves to us -------------------------------------------------

    def _checked_head(self) -> RequestHead:
        parser = self._parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):
            if version.startswith("0."):
                raise _Refuse(400, "HTTP/0.9 request lines are not accepted")
            raise _Refuse(505, f"HTTP version {version} is not supported here")
        if method == "CONNECT":
            raise _Refuse(405, "CONNECT is not served by a reverse proxy")
        target = self._target
        if not target.startswith(b"/") and not (method == "OPTIONS" and target == b"*"):
            # An absolute-form target names a host of its own beside the Host header: two
            # readers could route it two ways. A client of a reverse proxy sends a path.
            raise _Refuse(400, "request target is not a path (origin-form)")
        headers = self._headers
        scan = scan_request(headers, self.cookie_name)
        chunked = False
        if scan.transfer_encodings:
            if len(scan.transfer_encodings) > 1:
                raise _Refuse(400, "Transfer-Encoding given twice")
            if scan.transfer_encodings[0].strip().lower() != b"chunked":
                raise _Refuse(400, "Transfer-Encoding other than a single final chunked")
            if version == "1.0":
                raise _Refuse(400, "Transfer-Encoding in an HTTP/1.0 request")
            chunked = True
        # llhttp has checked the digits (and refused repeated Content-Length)
        content_length = int(scan.content_length) if scan.content_length is not None else None
        if scan.hosts != 1:
            if scan.hosts > 1:
                raise _Refuse(400, "more than one Host header")
            if version == "1.1":
                raise _Refuse(400, "HTTP/1.1 request without Host")
        upgrade = scan.upgrade
        if upgrade is not None and b"upgrade" not in scan.connection:
            upgrade = None  # Upgrade without `Connection: upgrade` is only a hint; drop it
        if upgrade is not None and (chunked or content_length):
            raise _Refuse(400, "upgrade request with a body")
        return RequestHead(
            method,
            target,
            version,
            headers,
            bool(parser.should_keep_alive()),
            chunked,
            content_length,
            upgrade.lower() if upgrade is not None else None,
            scan,
        )


def _complete_requests(events: list[Event]) -> list[Event]:
    """The prefix of `events` that forms whole requests (head ... end)."""
    last_end = -1
    for index, event in enumerate(events):
        if isinstance(event, RequestEnd):
            last_end = index
    return events[: last_end + 1]
