"""Malformed input never crashes or stalls the server, and valid queries keep being answered.

Two layers: `respond()` in-process against thousands of generated messages (it must never
raise, and whatever it sends back must parse and echo the query ID), then the real server
subprocess fed thousands of malformed datagrams and TCP streams, checked after every batch
with a valid query over both transports.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.dns.conftest import BASE_SPEC, Running, start_server

from rke2ha.dns.wire import respond
from rke2ha.dns.zone import build_zone
from rke2ha.spec import Spec

VALID = dns.message.make_query("rancher.example.com", "A", use_edns=0).to_wire()


def _mutations() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid queries with bytes flipped, cut short or extended."""
    flips = st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=8
    ).map(lambda changes: _flip(VALID, changes))
    cuts = st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n])
    tails = st.binary(min_size=1, max_size=64).map(lambda tail: VALID + tail)
    header_games = st.tuples(st.binary(min_size=12, max_size=12), st.binary(max_size=80)).map(
        lambda parts: parts[0] + VALID[12:] + parts[1]
    )
    return st.one_of(st.binary(max_size=600), flips, cuts, tails, header_games)


def _flip(wire: bytes, changes: list[tuple[int, int]]) -> bytes:
    data = bytearray(wire)
    for index, xor in changes:
        data[index] ^= xor
    return bytes(data)


ZONE = build_zone(Spec.model_validate(BASE_SPEC), 1)


@settings(max_examples=3000, deadline=None)
@given(wire=_mutations(), tcp=st.booleans())
def test_respond_never_raises_and_echoes_the_id(wire: bytes, tcp: bool) -> None:
    reply = respond(ZONE, wire, tcp=tcp, client="127.0.20.200")
    if reply is None:
        return
    assert reply[:2] == wire[:2]
    assert reply[2] & 0x80  # QR: it is a response
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() in (
        dns.rcode.NOERROR,
        dns.rcode.NXDOMAIN,
        dns.rcode.FORMERR,
        dns.rcode.REFUSED,
        dns.rcode.NOTIMP,
        dns.rcode.NOTAUTH,
        dns.rcode.BADVERS,
    )


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    spec = tmp_path_factory.mktemp("fuzz") / "rke2ha.yaml"
    spec.write_text(yaml.safe_dump(BASE_SPEC))
    running = start_server(spec)
    yield running
    stderr = running.stop()
    assert "Traceback" not in stderr, stderr


def _assert_answers(server: Running) -> None:
    query = dns.message.make_query("rancher.example.com", "A")
    for answer in (
        dns.query.udp(query, server.host, port=server.port, timeout=2),
        dns.query.tcp(query, server.host, port=server.port, timeout=2),
    ):
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.answer[0][0].address == "127.0.20.10"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(packets=st.lists(_mutations(), min_size=5, max_size=20))
def test_server_survives_malformed_udp(fuzzed_server: Running, packets: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, (fuzzed_server.host, fuzzed_server.port))
    _assert_answers(fuzzed_server)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    messages=st.lists(_mutations(), min_size=1, max_size=10),
    lie_about_length=st.booleans(),
    junk=st.binary(max_size=40),
)
def test_server_survives_malformed_tcp(
    fuzzed_server: Running, messages: list[bytes], lie_about_length: bool, junk: bytes
) -> None:
    stream = b"".join(struct.pack("!H", len(m)) + m for m in messages)
    if lie_about_length:
        stream = struct.pack("!H", 65535) + junk  # a length that never arrives
    else:
        stream += junk
    address = (fuzzed_server.host, fuzzed_server.port)
    # The server may close a garbage stream while we write: allowed.
    with socket.create_connection(address, timeout=2) as sock, contextlib.suppress(OSError):
        sock.sendall(stream)
    _assert_answers(fuzzed_server)
