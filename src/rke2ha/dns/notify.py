"""NOTIFY (RFC 1996) messages from the built-in primary to its secondaries, sans-I/O.

`notify_message` builds the request: opcode NOTIFY, AA set, one question (zone, SOA, IN)
(§3.7), and the new SOA in the answer section, which §3.7 allows as a hint so a secondary
can skip its SOA query when it already holds that serial. With a transfer key the request
is TSIG-signed (RFC 8945), and the acknowledgement must then be signed with the same key.

`is_ack` decides whether a datagram acknowledges a request: a response (QR) with the
request's ID, opcode NOTIFY and question (§3.6 lists ID and QNAME; dnspython's
`is_response` checks both and the opcode), rcode NOERROR, and a valid signature when the
request was signed. Anything else is not an ack and the request is sent again.

`RETRY_TIMEOUTS` is the schedule: §3.6 has the primary resend until it gets a response
or "too many copies have been sent", and suggests at most 5 retransmissions; the waits
double from 1 s so a secondary that is just starting still hears of the change, and the
whole sequence ends within 31 s. A newer change cancels the sequence for an older one.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from rke2ha.addresses import is_ip
from rke2ha.dns.hostport import split_host_port

NOTIFY_PORT = 53
RETRY_TIMEOUTS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)  # 1 send + 4 retransmissions


def notify_message(soa: dns.rrset.RRset, key: dns.tsig.Key | None) -> dns.message.Message:
    """A NOTIFY for the zone whose SOA is `soa` (its owner is the zone's apex)."""
    message = dns.message.make_query(soa.name, dns.rdatatype.SOA, use_edns=False)
    message.flags = dns.flags.AA  # §3.7: AA set; RD is meaningless in a NOTIFY
    message.set_opcode(dns.opcode.NOTIFY)
    message.answer.append(soa)
    if key is not None:
        message.use_tsig(key)
    return message


def is_ack(request: dns.message.Message, wire: bytes, key: dns.tsig.Key | None) -> bool:
    """Whether `wire` is the secondary's acknowledgement of `request` (RFC 1996 §3.6, §4.7)."""
    try:
        response = dns.message.from_wire(
            wire,
            keyring={key.name: key} if key is not None else None,
            request_mac=request.mac or b"",
        )
    except (dns.exception.DNSException, ValueError):
        return False  # unparseable, wrongly signed, or signed with a key we do not hold
    if key is not None and not response.had_tsig:
        return False
    return request.is_response(response) and response.rcode() == dns.rcode.NOERROR


def parse_target(text: str) -> tuple[str, int]:
    """IP:PORT of one `dns.builtin.notify` entry (port 53 when left out); ValueError.

    An IP, not a name: the primary must not depend on DNS to tell DNS servers about a
    change (BIND 9 ARM, `also-notify`: a list of addresses and ports)."""
    host, port = split_host_port(text, NOTIFY_PORT)
    if not is_ip(host):
        raise ValueError(f"{text!r}: {host} is not an IP address")
    return host, port
