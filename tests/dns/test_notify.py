"""NOTIFY (RFC 1996): the message and the ack check sans-I/O, and the asyncio sender
against a stand-in secondary on a real loopback UDP socket (127.0.231.0/24)."""

from __future__ import annotations

import asyncio
import time

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import pytest
from tests.dns.conftest import BASE_SPEC
from tests.support.specs import merge

from rke2ha.dns.notifier import Notifier
from rke2ha.dns.notify import RETRY_TIMEOUTS, is_ack, notify_message, parse_target
from rke2ha.dns.server import DnsServer, Listen
from rke2ha.dns.zone import build_zone
from rke2ha.spec import Spec

KEY = dns.tsig.Key("xfr-key.", b"transfer-key-for-the-unit-tests!", dns.tsig.HMAC_SHA256)
OTHER = dns.tsig.Key("xfr-key.", b"some-other-secret-of-32-bytes!!!", dns.tsig.HMAC_SHA256)
SOA = build_zone(Spec.model_validate(BASE_SPEC), 4242).soa
PRIMARY, SECONDARY = "127.0.231.1", "127.0.231.2"


def test_message_shape() -> None:
    message = notify_message(SOA, None)
    parsed = dns.message.from_wire(message.to_wire())
    assert parsed.opcode() == dns.opcode.NOTIFY
    assert parsed.flags & dns.flags.AA and not parsed.flags & (dns.flags.QR | dns.flags.RD)
    [question] = parsed.question
    assert (question.name, question.rdtype, question.rdclass) == (
        dns.name.from_text("example.com"),
        dns.rdatatype.SOA,
        dns.rdataclass.IN,
    )
    assert parsed.answer[0][0].serial == 4242 and parsed.tsig is None and parsed.edns < 0


def test_signed_message_verifies_with_the_key_only() -> None:
    wire = notify_message(SOA, KEY).to_wire()
    assert dns.message.from_wire(wire, keyring={KEY.name: KEY}).had_tsig
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(wire, keyring={OTHER.name: OTHER})


def ack_for(request: dns.message.Message, key: dns.tsig.Key | None = None) -> bytes:
    """What a secondary answers: the request's header and question, QR, signed like it."""
    parsed = dns.message.from_wire(
        request.to_wire() if request.wire is None else request.wire,
        keyring={key.name: key} if key else None,
    )
    return dns.message.make_response(parsed).to_wire()


def test_ack_check() -> None:
    request = notify_message(SOA, None)
    request.to_wire()
    assert is_ack(request, ack_for(request), None)
    other_id = dns.message.from_wire(ack_for(request))
    other_id.id ^= 1
    assert not is_ack(request, other_id.to_wire(), None)
    refused = dns.message.from_wire(ack_for(request))
    refused.set_rcode(dns.rcode.REFUSED)
    assert not is_ack(request, refused.to_wire(), None)
    assert not is_ack(request, b"\x00garbage", None)
    assert not is_ack(request, request.to_wire(), None)  # our own request is not an answer


def test_signed_ack_check() -> None:
    request = notify_message(SOA, KEY)
    request.to_wire()
    assert is_ack(request, ack_for(request, KEY), KEY)
    unsigned = dns.message.from_wire(ack_for(request, KEY), keyring=False)
    unsigned.tsig = None
    assert not is_ack(request, unsigned.to_wire(), KEY)  # signed request: ack must be signed
    forged = dns.message.from_wire(
        ack_for(request, KEY), keyring={KEY.name: KEY}, request_mac=request.mac
    )
    forged.use_tsig(OTHER)
    assert not is_ack(request, forged.to_wire(), KEY)


def test_retry_schedule_is_bounded() -> None:
    # RFC 1996 §3.6: a bounded number of retransmissions (it suggests at most 5).
    assert 1 < len(RETRY_TIMEOUTS) <= 6
    assert list(RETRY_TIMEOUTS) == sorted(RETRY_TIMEOUTS)  # backoff, never faster
    assert sum(RETRY_TIMEOUTS) <= 60


def test_targets() -> None:
    assert parse_target("127.0.231.2") == ("127.0.231.2", 53)
    assert parse_target("[::1]:5353") == ("::1", 5353)
    for bad in ("ns1.example.com", "127.0.231.2:0", "127.0.231.2:99999", ""):
        with pytest.raises(ValueError):
            parse_target(bad)


class _Secondary(asyncio.DatagramProtocol):
    """Ignores the first `drop` NOTIFYs, then acks; records each request and its source."""

    def __init__(self, drop: int, key: dns.tsig.Key | None) -> None:
        self.drop, self.key = drop, key
        self.seen: list[tuple[float, str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = dns.message.from_wire(
            data, keyring={self.key.name: self.key} if self.key else None
        )
        self.seen.append((time.monotonic(), str(addr[0]), request.id))
        if len(self.seen) > self.drop and self.transport is not None:
            self.transport.sendto(dns.message.make_response(request).to_wire(), addr)


async def _round(drop: int, key: dns.tsig.Key | None) -> tuple[list[bool], _Secondary, float]:
    loop = asyncio.get_running_loop()
    transport, secondary = await loop.create_datagram_endpoint(
        lambda: _Secondary(drop, key), local_addr=(SECONDARY, 0)
    )
    port = transport.get_extra_info("sockname")[1]
    notifier = Notifier([(SECONDARY, port)], PRIMARY, key, timeouts=(0.1, 0.2, 0.4))
    started = time.monotonic()
    try:
        notifier.zone_changed(SOA)
        results = await asyncio.wait_for(notifier.wait(), 5)
    finally:
        notifier.cancel()
        transport.close()
    return results, secondary, time.monotonic() - started


def test_sender_retries_until_acknowledged() -> None:
    results, secondary, _ = asyncio.run(_round(drop=2, key=KEY))
    assert results == [True]
    assert len(secondary.seen) == 3  # two lost, the third acknowledged, nothing after
    assert {source for _, source, _ in secondary.seen} == {PRIMARY}  # from the listen address
    assert len({qid for _, _, qid in secondary.seen}) == 1  # one request, resent as it is
    gaps = [b[0] - a[0] for a, b in zip(secondary.seen, secondary.seen[1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # the backoff schedule, not a tight loop


def test_sender_gives_up_after_the_schedule() -> None:
    results, secondary, seconds = asyncio.run(_round(drop=99, key=None))
    assert results == [False]
    assert len(secondary.seen) == 3
    assert 0.65 <= seconds < 2.0  # 0.1 + 0.2 + 0.4 s of waiting, then it stops


async def _server_round() -> tuple[list[int], list[int]]:
    """DnsServer in-process, notifying the stand-in: start, a no-op reload, a real change."""
    loop = asyncio.get_running_loop()
    transport, secondary = await loop.create_datagram_endpoint(
        lambda: _Secondary(0, None), local_addr=(SECONDARY, 0)
    )
    port = transport.get_extra_info("sockname")[1]
    first = Spec.model_validate(
        merge(BASE_SPEC, {"dns": {"builtin": {"notify": [f"{SECONDARY}:{port}"]}}})
    )
    changed = Spec.model_validate(
        merge(
            first.model_dump(mode="json", exclude_none=True),
            {"load_balancer": {"address": "127.0.231.11"}},
        )
    )
    specs = iter([first, changed])
    server = DnsServer(first, Listen(PRIMARY, 0), reload=lambda: next(specs))
    serials: list[int] = []
    try:
        await server.start()
        await asyncio.wait_for(server.notifier.wait(), 5)
        serials.append(server.serial)
        seen_after_start = len(secondary.seen)
        server.reload()  # the same spec: same zone, same serial, nobody notified
        await asyncio.sleep(0.3)
        serials.append(server.serial)
        assert len(secondary.seen) == seen_after_start
        server.reload()  # a new LB address: new serial, NOTIFY
        await asyncio.wait_for(server.notifier.wait(), 5)
        serials.append(server.serial)
    finally:
        server.close()
        transport.close()
    return serials, [len(secondary.seen)]


def test_server_notifies_on_changes_only() -> None:
    serials, [notifies] = asyncio.run(_server_round())
    assert serials[0] == serials[1] < serials[2]
    assert notifies == 2  # start and the real change, each acknowledged at once
