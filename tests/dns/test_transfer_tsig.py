"""Zone transfers with TSIG (RFC 8945) and IXFR (RFC 1995), sans-I/O: bytes in, bytes out."""

from __future__ import annotations

import base64
import time
import types
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.dns.conftest import BASE_SPEC
from tests.support.specs import merge

from rke2ha.dns.signing import BADKEY, BADSIG, BADTIME
from rke2ha.dns.wire import answer, respond
from rke2ha.dns.zone import Zone, build_zone, serial_at_least
from rke2ha.spec import Spec

KEY_NAME = dns.name.from_text("xfr-key.")
SECRET = b"transfer-key-for-the-unit-tests!"
KEY = dns.tsig.Key(KEY_NAME, SECRET, dns.tsig.HMAC_SHA256)
WRONG_SECRET = dns.tsig.Key(KEY_NAME, b"not-the-secret-the-server-holds!", dns.tsig.HMAC_SHA256)
WRONG_NAME = dns.tsig.Key(dns.name.from_text("other."), SECRET, dns.tsig.HMAC_SHA256)
WRONG_ALGORITHM = dns.tsig.Key(KEY_NAME, SECRET, dns.tsig.HMAC_SHA512)
SERIAL = 1000
INSIDE, OUTSIDE = "127.0.231.5", "127.0.232.5"


def keyed_zone(**dns_extra: Any) -> Zone:
    spec = Spec.model_validate(merge(BASE_SPEC, {"dns": dns_extra}))
    return build_zone(spec, SERIAL, transfer_key=KEY)


def query(rdtype: str = "AXFR", key: dns.tsig.Key | None = KEY) -> dns.message.Message:
    message = dns.message.make_query("example.com", rdtype, use_edns=False)
    if key is not None:
        message.use_tsig(key)
    return message


def exchange(
    zone: Zone, message: dns.message.Message, tcp: bool = True, client: str = INSIDE
) -> bytes:
    reply = respond(zone, message.to_wire(), tcp=tcp, client=client)
    assert reply is not None
    return reply


def verified(reply: bytes, message: dns.message.Message) -> dns.message.Message:
    """The reply parsed with the key: raises unless it is signed over the request's MAC."""
    response = dns.message.from_wire(
        reply, keyring={KEY_NAME: KEY}, request_mac=message.mac, xfr=True
    )
    assert response.had_tsig
    return response


def tsig_of(reply: bytes) -> tuple[int, Any]:
    """(rcode, the TSIG rdata) of an error reply, read without checking any signature."""
    response = dns.message.from_wire(reply, keyring=False)
    assert response.tsig is not None, "a TSIG error answer carries a TSIG RR"
    return response.rcode(), response.tsig[0]


def test_signed_axfr_is_answered_whole_and_signed() -> None:
    zone = keyed_zone()  # key set, axfr_allow empty: the key alone admits
    message = query()
    response = verified(exchange(zone, message), message)
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    rrsets = response.answer
    assert rrsets[0].rdtype == rrsets[-1].rdtype == dns.rdatatype.SOA
    assert rrsets[0][0].serial == SERIAL
    assert any(r.name.to_text() == "rancher.example.com." for r in rrsets)


def test_unsigned_transfer_is_refused_when_a_key_is_set() -> None:
    zone = keyed_zone(builtin={"axfr_allow": ["127.0.231.0/24"]})
    for rdtype in ("AXFR", "IXFR"):
        message = query(rdtype, key=None)
        if rdtype == "IXFR":
            message.authority.append(zone.soa)
        response = dns.message.from_wire(exchange(zone, message))
        assert response.rcode() == dns.rcode.REFUSED and not response.answer


def test_unknown_key_name_and_algorithm_get_notauth_badkey_unsigned() -> None:
    for wrong in (WRONG_NAME, WRONG_ALGORITHM):
        rcode, tsig = tsig_of(exchange(keyed_zone(), query(key=wrong)))
        assert rcode == dns.rcode.NOTAUTH
        assert tsig.error == BADKEY and tsig.mac == b""  # RFC 8945 §5.3.2: unsigned


def test_wrong_secret_gets_notauth_badsig_unsigned() -> None:
    reply = exchange(keyed_zone(), query(key=WRONG_SECRET))
    rcode, tsig = tsig_of(reply)
    assert rcode == dns.rcode.NOTAUTH and tsig.error == BADSIG and tsig.mac == b""
    assert not dns.message.from_wire(reply, keyring=False).answer
    # Not cached either: the next request signed correctly must not meet this answer.
    assert answer(keyed_zone(), query(key=WRONG_SECRET).to_wire(), tcp=True, client="")[1] is False


def test_stale_time_gets_notauth_badtime_signed_with_our_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = query()
    with monkeypatch.context() as patch:  # sign the request 20 minutes in the past
        patch.setattr(dns.message, "time", types.SimpleNamespace(time=lambda: time.time() - 1200))
        wire = message.to_wire()
    reply = respond(keyed_zone(), wire, tcp=True, client=INSIDE)
    assert reply is not None
    rcode, tsig = tsig_of(reply)
    assert rcode == dns.rcode.NOTAUTH and tsig.error == BADTIME
    assert len(tsig.mac) == 32  # §5.2.3 / §5.3.2: this error answer is signed (SHA-256 MAC)
    assert abs(int.from_bytes(tsig.other, "big") - time.time()) < 5  # Other Data: our clock
    with pytest.raises(dns.tsig.PeerBadTime):  # what a client library makes of it
        dns.message.from_wire(reply, keyring={KEY_NAME: KEY}, request_mac=message.mac)


def test_axfr_allow_still_applies_with_a_key() -> None:
    zone = keyed_zone(builtin={"axfr_allow": ["127.0.231.0/24"]})
    message = query()
    assert verified(exchange(zone, message, client=INSIDE), message).rcode() == 0
    message = query()
    outside = verified(exchange(zone, message, client=OUTSIDE), message)
    assert outside.rcode() == dns.rcode.REFUSED  # refused, and the refusal is signed


def test_signed_plain_query_is_answered_signed_and_not_cached() -> None:
    zone = keyed_zone()
    message = query("SOA")
    reply, cacheable = answer(zone, message.to_wire(), tcp=False, client=OUTSIDE)
    assert reply is not None and not cacheable
    response = verified(reply, message)
    assert response.answer[0].rdtype == dns.rdatatype.SOA
    plain = query("SOA", key=None)
    assert answer(zone, plain.to_wire(), tcp=False, client=OUTSIDE)[1] is True


def test_signed_query_without_a_configured_key_is_badkey() -> None:
    zone = build_zone(Spec.model_validate(BASE_SPEC), SERIAL)
    rcode, tsig = tsig_of(exchange(zone, query("SOA"), tcp=False))
    assert rcode == dns.rcode.NOTAUTH and tsig.error == BADKEY


def ixfr(zone: Zone, client_serial: int, tcp: bool = True) -> dns.message.Message:
    message = query("IXFR")
    soa = zone.soa[0].replace(serial=client_serial)
    message.authority.append(dns.rrset.from_rdata(zone.origin, 60, soa))
    message.use_tsig(KEY)  # re-sign: the authority section changed
    return verified(exchange(zone, message, tcp=tcp), message)


@pytest.mark.parametrize(
    ("client_serial", "whole"),
    [
        (SERIAL - 1, True),  # older: the zone in AXFR form (RFC 1995 §4, no journal)
        (SERIAL, False),  # current: our SOA alone (§2)
        (SERIAL + 5, False),  # newer: our SOA alone (§2)
        ((SERIAL + 2**31 + 1) % 2**32, True),  # RFC 1982: more than half the space away = older
    ],
)
def test_ixfr_over_tcp(client_serial: int, whole: bool) -> None:
    zone = keyed_zone()
    response = ixfr(zone, client_serial)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0] == zone.soa
    if whole:
        assert len(response.answer) > 2 and response.answer[-1] == zone.soa
    else:
        assert len(response.answer) == 1


def test_ixfr_over_udp_gets_the_soa_alone_and_axfr_is_refused() -> None:
    zone = keyed_zone()
    assert [r.rdtype for r in ixfr(zone, SERIAL - 1, tcp=False).answer] == [dns.rdatatype.SOA]
    message = query("AXFR")
    assert verified(exchange(zone, message, tcp=False), message).rcode() == dns.rcode.REFUSED


def test_ixfr_without_the_clients_soa_is_formerr() -> None:
    message = query("IXFR")
    assert verified(exchange(keyed_zone(), message), message).rcode() == dns.rcode.FORMERR


def test_serial_arithmetic() -> None:
    assert serial_at_least(5, 5) and serial_at_least(6, 5) and not serial_at_least(4, 5)
    assert serial_at_least(3, 2**32 - 3)  # wrapped around: 3 follows 2**32-3
    assert not serial_at_least(2**32 - 3, 3)


def test_the_secret_is_not_in_the_keys_repr() -> None:
    from rke2ha.dns.tsigkey import Tsig

    tsig = Tsig(KEY_NAME, SECRET, dns.tsig.HMAC_SHA256)
    assert base64.b64encode(SECRET).decode() not in repr(tsig) and "secret" not in repr(tsig)


SIGNED = query("AXFR").to_wire()
# The header after the ID, the question: bytes the MAC covers as they are (the TSIG RR's
# own TTL and name case are not: RFC 8945 §4.3.3 digests the canonical key name).
BODY_END = len(query("AXFR", key=None).to_wire())


def _mangle(changes: list[tuple[int, int]]) -> bytes:
    data = bytearray(SIGNED)
    for index, xor in changes:
        data[index] ^= xor
    return bytes(data)


@settings(max_examples=1500, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.integers(0, len(SIGNED) - 1), st.integers(1, 255)), min_size=1, max_size=6
    ),
    tcp=st.booleans(),
)
def test_mangled_signed_requests_never_raise(changes: list[tuple[int, int]], tcp: bool) -> None:
    wire = _mangle(changes)
    reply = respond(keyed_zone(), wire, tcp=tcp, client=INSIDE)
    if reply is not None:
        assert reply[:2] == wire[:2] and reply[2] & 0x80
        dns.message.from_wire(reply, keyring=False)


@settings(max_examples=800, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.integers(2, BODY_END - 1), st.integers(1, 255)), min_size=1, max_size=4
    )
)
def test_a_request_changed_after_signing_never_gets_the_zone(
    changes: list[tuple[int, int]],
) -> None:
    wire = _mangle(changes)
    reply = respond(keyed_zone(), wire, tcp=True, client=INSIDE)
    if reply is None or wire == SIGNED:
        return
    parsed = dns.message.from_wire(reply, keyring=False)
    assert not parsed.answer and parsed.rcode() != dns.rcode.NOERROR


def test_a_udp_ixfr_answer_is_never_cached_since_it_depends_on_the_client() -> None:
    # One allowed secondary and one stranger ask the same bytes over UDP: each gets its own
    # answer, not the other's from the answer cache.
    from rke2ha.dns.server import Answerer

    spec = Spec.model_validate(merge(BASE_SPEC, {"dns": {"builtin": {"axfr_allow": [INSIDE]}}}))
    zone = build_zone(spec, SERIAL)
    answerer = Answerer(zone)
    message = query("IXFR", key=None)
    message.authority.append(dns.rrset.from_rdata(zone.origin, 60, zone.soa[0]))
    wire = message.to_wire()
    for client, rcode in ((OUTSIDE, dns.rcode.REFUSED), (INSIDE, dns.rcode.NOERROR)) * 2:
        reply = answerer.answer(wire, tcp=False, client=client)
        assert reply is not None
        assert dns.message.from_wire(reply).rcode() == rcode, client
