"""DNS messages on the wire: bytes in, the zone's answer out, sized for the transport.

`respond` parses a query, asks `Zone.answer`, applies the client's UDP size (its EDNS0
buffer, else 512 bytes) and truncates with TC when the answer does not fit, so the client
retries over TCP. A message that cannot be parsed gets FORMERR when its header can be
read, and nothing otherwise: nothing a client sends makes `respond` raise. TSIG-signed
requests are verified by `signing.py` first. Sans-I/O like the zone; the server adapters
call it with the bytes they received.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from rke2ha.dns.signing import Rejected, read_query
from rke2ha.dns.zone import Zone

PLAIN_UDP_LIMIT = 512  # RFC 1035 limit for a client without EDNS0
HEADER_LEN = 12


def udp_limit(query: dns.message.Message) -> int:
    """How large a UDP answer the client accepts: its EDNS0 payload, else 512 bytes."""
    if query.edns < 0:
        return PLAIN_UDP_LIMIT
    return max(PLAIN_UDP_LIMIT, min(query.payload, 65535))


def formerr(wire: bytes) -> bytes | None:
    """A bare FORMERR echoing the ID of an unparseable query; None when it must be dropped."""
    if len(wire) < HEADER_LEN or wire[2] & 0x80:  # no header, or a response (QR): drop
        return None
    # Keep the opcode and RD, set QR and the rcode; all four section counts are zero.
    flags = dns.flags.QR | (int.from_bytes(wire[2:4], "big") & (0x7800 | dns.flags.RD))
    return wire[0:2] + (flags | dns.rcode.FORMERR).to_bytes(2, "big") + bytes(8)


def render(response: dns.message.Message, limit: int) -> bytes:
    """`response` in wire format within `limit` bytes; too big: empty sections and TC."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # Partial answers confuse caches (RFC 2181 §9): send none, the client retries on TCP.
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def respond(zone: Zone, wire: bytes, *, tcp: bool, client: str) -> bytes | None:
    """The answer to the query bytes `wire`, or None when nothing should be sent."""
    return answer(zone, wire, tcp=tcp, client=client)[0]


def answer(zone: Zone, wire: bytes, *, tcp: bool, client: str) -> tuple[bytes | None, bool]:
    """(the answer, or None when nothing should be sent; whether it may be cached).

    Answers to TSIG-signed requests carry a signature over the request's MAC and the
    current time, and transfer answers depend on the client's address, so neither is
    cached."""
    try:
        query = read_query(wire, zone.transfer_key)
    except Exception:  # dnspython raises many kinds for bad input; all mean FORMERR.
        return formerr(wire), True
    if isinstance(query, Rejected):
        return query.reply, False
    if query.flags & dns.flags.QR:
        return None, True
    try:
        response = zone.answer(query, tcp=tcp, client=client)
    except Exception:
        return _refused_header(wire, dns.rcode.SERVFAIL), False
    # Transfer answers depend on who asks (axfr_allow): never served from the cache.
    transfer = any(q.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR) for q in query.question)
    cacheable = query.tsig is None and not transfer
    return render(response, 65535 if tcp else udp_limit(query)), cacheable


def _refused_header(wire: bytes, rcode: int) -> bytes | None:
    header = formerr(wire)
    if header is None:
        return None
    return header[:3] + bytes([rcode]) + header[4:]
