"""Reading node responses: framing, HEAD, interim 1xx, switch, close-delimited, trailers."""

from __future__ import annotations

from rke2ha.lb.l7.http_back import (
    BadResponse,
    Interim,
    ResponseData,
    ResponseEnd,
    ResponseHead,
    ResponseReader,
    Switched,
)
from rke2ha.lb.l7.http_front import BodyData, RequestEnd, RequestHead, RequestReader


def read(method: str, *chunks: bytes) -> list[object]:
    reader = ResponseReader()
    reader.expect(method)
    events: list[object] = []
    for data in chunks:
        events += reader.feed(data)
    return events


def test_content_length_and_keep_alive() -> None:
    events = read("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo")
    head = events[0]
    assert isinstance(head, ResponseHead) and head.content_length == 5 and head.keep_alive
    assert events[1:] == [ResponseData(b"hel"), ResponseData(b"lo"), ResponseEnd(True)]


def test_head_response_has_no_body_whatever_it_says() -> None:
    events = read("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
    assert isinstance(events[0], ResponseHead) and events[1:] == [ResponseEnd(reusable=False)]


def test_interim_then_final() -> None:
    events = read(
        "POST", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(events[0], Interim) and events[0].status == 100
    assert isinstance(events[1], ResponseHead) and events[1].status == 201
    assert events[2] == ResponseEnd(True)


def test_close_delimited_body_ends_at_eof() -> None:
    events = read("GET", b"HTTP/1.1 200 OK\r\n\r\nabc", b"")
    assert events[1:] == [ResponseData(b"abc"), ResponseEnd(reusable=False)]


def test_chunked_with_trailers_drops_the_trailers() -> None:
    events = read(
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    head = events[0]
    assert isinstance(head, ResponseHead) and head.chunked
    assert all(name != b"X-Trailer" for name, _ in head.headers)
    assert events[1:] == [ResponseData(b"abc"), ResponseEnd(True)]


def test_switch_hands_over_the_tail() -> None:
    events = read(
        "GET",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n\x81\x00",
    )
    assert isinstance(events[0], ResponseHead) and events[-1] == Switched(b"\x81\x00")


def test_close_before_any_byte_and_garbage() -> None:
    assert isinstance(read("GET", b"")[0], BadResponse)
    assert isinstance(read("GET", b"NOT HTTP\r\n\r\n")[0], BadResponse)


def test_request_trailers_are_dropped_and_bounded() -> None:
    events = RequestReader().feed(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert [type(e) for e in events] == [RequestHead, BodyData, RequestEnd, RequestHead, RequestEnd]
    first = events[0]
    assert isinstance(first, RequestHead) and (b"X-T", b"1") not in first.headers
