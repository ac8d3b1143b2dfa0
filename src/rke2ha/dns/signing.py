"""TSIG (RFC 8945) on the built-in server's requests: verify, or build the error answer.

`read_query` parses a request once without checking its TSIG, to learn the key name and
algorithm, then (when it names our key) again with the key, which makes dnspython verify
the MAC and the time. A verified request comes back as a Message whose `keyring` is our
key, so `dns.message.make_response` signs the answer with it (RFC 8945 §5.3: the answer
to a signed request is signed). A request that fails gets its error answer here, as
§5.2 prescribes, always with RCODE NOTAUTH and a TSIG RR carrying the TSIG error:
- §5.2.1 key unknown, or its algorithm not ours: BADKEY, unsigned (empty MAC, §5.3.2);
- §5.2.2 MAC wrong: BADSIG, unsigned (empty MAC, §5.3.2: never signed);
- §5.2.3 time outside the fudge: BADTIME, signed, Other Data = our clock (6 bytes), so
  the client can see the skew.
An unsigned request is not a TSIG error: it is answered by the zone's ACL (REFUSED for a
transfer that needs the key). Sans-I/O; the secret never leaves the key object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from rke2ha.dns.zone import OUR_UDP_PAYLOAD

# RFC 8945 §5.2 TSIG error codes (they share the extended RCODE registry).
BADSIG, BADKEY, BADTIME = dns.rcode.BADSIG, dns.rcode.BADKEY, dns.rcode.BADTIME


@dataclass(frozen=True)
class Rejected:
    """A signed request that failed its TSIG check, and the answer it gets."""

    error: int  # BADKEY, BADSIG or BADTIME
    reply: bytes


def read_query(wire: bytes, key: dns.tsig.Key | None) -> dns.message.Message | Rejected:
    """The request in `wire`, verified against `key` when signed; Rejected when it fails.

    Raises what dnspython raises for a malformed message (the caller answers FORMERR)."""
    query = dns.message.from_wire(wire, keyring=False, one_rr_per_rrset=False)
    if query.tsig is None or query.flags & dns.flags.QR:
        return query
    rdata = query.tsig[0]
    if key is None or query.tsig.name != key.name or rdata.algorithm != key.algorithm:
        return Rejected(BADKEY, _unsigned_error(query, BADKEY))
    try:
        return dns.message.from_wire(wire, keyring={key.name: key}, one_rr_per_rrset=False)
    except dns.tsig.BadSignature:
        return Rejected(BADSIG, _unsigned_error(query, BADSIG))
    except dns.tsig.BadTime:
        # dnspython checks the MAC before the time: the request is authentic, only late.
        return Rejected(BADTIME, _badtime(query, key))


def _error_response(query: dns.message.Message) -> dns.message.Message:
    # Parsed without a keyring, so not signed by make_response.
    response = dns.message.make_response(query, our_payload=OUR_UDP_PAYLOAD)
    response.set_rcode(dns.rcode.NOTAUTH)
    return response


def _unsigned_error(query: dns.message.Message, error: int) -> bytes:
    assert query.tsig is not None
    rdata = query.tsig[0]
    response = _error_response(query)
    tsig = rdata.replace(mac=b"", error=error, other=b"")
    response.tsig = dns.rrset.from_rdata(query.tsig.name, 0, tsig)
    return response.to_wire()


def _badtime(query: dns.message.Message, key: dns.tsig.Key) -> bytes:
    assert query.tsig is not None
    rdata = query.tsig[0]
    response = _error_response(query)
    now = int(time.time())
    response.use_tsig(
        key,
        fudge=rdata.fudge,
        original_id=rdata.original_id,
        tsig_error=BADTIME,
        other_data=now.to_bytes(6, "big"),
    )
    response.request_mac = rdata.mac  # §5.3.2: the signed error covers the request's MAC
    return response.to_wire()
