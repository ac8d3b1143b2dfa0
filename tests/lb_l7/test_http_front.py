"""The strict request reader, byte by byte: what llhttp refuses, what we refuse on top."""

from __future__ import annotations

import httptools
import pytest

from rke2ha.lb.l7.http_front import (
    BodyData,
    FrontLimits,
    Rejected,
    RequestEnd,
    RequestHead,
    RequestReader,
    UpgradeTail,
)

H = b"Host: a\r\n"

# (name, raw request, expected status). Each is a request that two HTTP readers could
# frame or route differently; every one must be refused before any event escapes.
AMBIGUOUS = [
    (
        "CL and TE",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE and CL",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "differing CL",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    (
        "repeated equal CL",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    ),
    ("CL list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    ("CL sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("TE gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    (
        "TE gzip, chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE chunked, gzip",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "TE twice",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    (
        "TE in HTTP/1.0",
        b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "space before colon",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "vertical tab in TE",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    ("obs-fold tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n\tc\r\n\r\n", 400),
    ("bare LF lines", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare LF in headers", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ("bare CR in headers", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400),
    ("bare CR in value", b"GET / HTTP/1.1\r\n" + H + b"X: y\rz\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X: y\x00z\r\n\r\n", 400),
    ("control byte in value", b"GET / HTTP/1.1\r\n" + H + b"X: y\x01z\r\n\r\n", 400),
    ("DEL in value", b"GET / HTTP/1.1\r\n" + H + b"X: y\x7fz\r\n\r\n", 400),
    ("NUL in target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control in target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("NUL in name", b"GET / HTTP/1.1\r\n" + H + b"X\x00: y\r\n\r\n", 400),
    (
        "chunk size not hex",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size negative",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size 0x",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size space",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size overflow",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size bare LF",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk data overrun",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    ("two Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("no Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /\r\n\r\n", 400),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    ("HTTP/2.0 in text", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("lower-case method", b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("unknown method", b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    (
        "upgrade with body",
        b"GET / HTTP/1.1\r\n"
        + H
        + b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    ("leading whitespace header", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    ("empty header name", b"GET / HTTP/1.1\r\n" + H + b": y\r\n\r\n", 400),
    (
        "absolute-form target",
        b"GET http://other.example/admin HTTP/1.1\r\nHost: rancher\r\n\r\n",
        400,
    ),
]


@pytest.mark.parametrize(("name", "raw", "status"), AMBIGUOUS, ids=[c[0] for c in AMBIGUOUS])
def test_ambiguous_request_is_refused_whole(name: str, raw: bytes, status: int) -> None:
    events = RequestReader().feed(raw)
    assert events == [Rejected(status, events[-1].reason)], events  # type: ignore[union-attr]
    assert isinstance(events[-1], Rejected) and events[-1].reason


@pytest.mark.parametrize(("name", "raw", "status"), AMBIGUOUS, ids=[c[0] for c in AMBIGUOUS])
def test_ambiguous_request_is_refused_fed_byte_by_byte(name: str, raw: bytes, status: int) -> None:
    """Slow delivery must not change the verdict, and no head may escape before it."""
    reader = RequestReader()
    events = []
    for index in range(len(raw)):
        events += reader.feed(raw[index : index + 1])
        if reader.finished:
            break
    rejected = [e for e in events if isinstance(e, Rejected)]
    assert rejected and rejected[0].status == status
    # Bodies are streamed, so a chunk error found after the head may follow released body
    # events; a refusal found in the head must leave nothing before it.
    if not name.startswith("chunk"):
        assert events == rejected


# Which of the cases above llhttp (through httptools, default strict flags) refuses by itself:
# the rest are this module's own checks. Keeping the list honest guards against a
# httptools upgrade that silently changes what it accepts.
OURS = {
    "TE gzip, chunked",
    "TE in HTTP/1.0",
    "two Host",
    "no Host in 1.1",
    "HTTP/0.9",
    "HTTP/2.0 in text",
    "CONNECT",
    "upgrade with body",
    "absolute-form target",
}


class _Sink:
    def __getattr__(self, name: str) -> object:
        return lambda *args: None


@pytest.mark.parametrize(("name", "raw", "status"), AMBIGUOUS, ids=[c[0] for c in AMBIGUOUS])
def test_who_refuses_what(name: str, raw: bytes, status: int) -> None:
    parser = httptools.HttpRequestParser(_Sink())
    try:
        parser.feed_data(raw)
        refused_by_llhttp = False
    except httptools.HttpParserUpgrade:
        refused_by_llhttp = False
    except httptools.HttpParserError:
        refused_by_llhttp = True
    assert refused_by_llhttp == (name not in OURS)


def test_valid_requests_pass_with_their_framing() -> None:
    reader = RequestReader()
    events = reader.feed(
        b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n0\r\n\r\n"
    )
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [(h.method, h.target) for h in heads] == [
        ("GET", b"/a?b=1"),
        ("POST", b"/p"),
        ("PUT", b"/c"),
    ]
    assert heads[1].content_length == 5 and not heads[1].chunked
    assert heads[2].chunked and heads[2].content_length is None
    assert [e.data for e in events if isinstance(e, BodyData)] == [b"hello", b"abc"]
    assert sum(isinstance(e, RequestEnd) for e in events) == 3


def test_valid_request_before_a_bad_one_is_served_then_refused() -> None:
    events = RequestReader().feed(
        b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert isinstance(events[0], RequestHead) and events[0].target == b"/ok"
    assert isinstance(events[1], RequestEnd)
    assert isinstance(events[2], Rejected) and len(events) == 3


def test_limits_give_414_and_431() -> None:
    limits = FrontLimits(max_target=100, max_head=1000)
    long_target = RequestReader(limits).feed(
        b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [type(e) for e in long_target] == [Rejected] and long_target[0].status == 414  # type: ignore[union-attr]
    big_head = RequestReader(limits).feed(
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"b" * 2000 + b"\r\n\r\n"
    )
    assert big_head[0].status == 431  # type: ignore[union-attr]
    many = RequestReader(FrontLimits(max_headers=5)).feed(
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10)) + b"\r\n"
    )
    assert many[0].status == 431  # type: ignore[union-attr]


def test_slow_huge_header_value_is_cut_at_the_limit() -> None:
    reader = RequestReader(FrontLimits(max_head=1000))
    events = reader.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ")
    for _ in range(100):
        events += reader.feed(b"a" * 100)
        if reader.finished:
            break
    assert events and isinstance(events[-1], Rejected) and events[-1].status == 431


def test_upgrade_hands_over_the_tail() -> None:
    events = RequestReader().feed(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\nFRAME"
    )
    head = events[0]
    assert isinstance(head, RequestHead) and head.upgrade == b"websocket"
    assert events[-1] == UpgradeTail(b"FRAME")


def test_head_cut_by_close_is_refused() -> None:
    reader = RequestReader()
    assert reader.feed(b"GET / HTTP/1.1\r\nHo") == []
    assert reader.in_head
    assert reader.feed(b"")[0].status == 400  # type: ignore[union-attr]
