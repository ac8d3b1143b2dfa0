"""Property tests of the strict reader: arbitrary bytes never crash it, and how the bytes
are split into reads never changes what it decides (a slow or fragmenting client cannot
get a request through that the same bytes in one read would not)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rke2ha.lb.l7.http_front import BodyData, Event, Rejected, RequestReader, UpgradeTail

PIECES = [
    b"GET / HTTP/1.1\r\n",
    b"POST /x HTTP/1.1\r\n",
    b"GET / HTTP/1.0\r\n",
    b"Host: a\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 4\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Connection: upgrade\r\nUpgrade: websocket\r\n",
    b" folded\r\n",
    b"X: a\rb\r\n",
    b"\r\n",
    b"abc",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"\n",
    b"\x00",
]


def verdict(events: list[Event]) -> list[object]:
    """What the events decide, with body bytes merged (read boundaries split them)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, BodyData) and out and isinstance(out[-1], bytes):
            out[-1] += event.data
        elif isinstance(event, BodyData):
            out.append(event.data)
        elif isinstance(event, Rejected):
            out.append(("rejected", event.status))
        else:
            out.append(event)
    return out


def feed_all(chunks: list[bytes]) -> list[Event]:
    reader = RequestReader()
    events: list[Event] = []
    for data in chunks:
        if reader.finished and events and isinstance(events[-1], UpgradeTail):
            # After an upgrade the connection tunnels whatever comes next unread: bytes of a
            # later read belong to the new protocol just as the tail of the head's read does.
            events[-1] = UpgradeTail(events[-1].data + data)
            continue
        events += reader.feed(data)
    return events


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    events = RequestReader().feed(data)
    assert all(e is not None for e in events)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14), st.data())
def test_splitting_never_changes_the_verdict(pieces: list[bytes], data: st.DataObject) -> None:
    raw = b"".join(pieces)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=8)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True) if a < b]
    whole = verdict(feed_all([raw]))
    split = verdict(feed_all(chunks))
    # A refusal must come at the same point; before it, the same requests.
    assert [e for e in whole if not isinstance(e, bytes)] == [
        e for e in split if not isinstance(e, bytes)
    ]
