"""The built-in server's zone and its answers, without sockets (sans-I/O).

Theory of operation: `build_zone` turns the spec into a `Zone` (SOA, NS, the hostname's
A/AAAA or CNAME, the ownership TXT); `Zone.answer` maps one parsed query to one response
`Message` (`wire.py` turns bytes into queries and answers into bytes). Everything here is
plain data manipulation on dnspython types, so the server adapters only move bytes.

Rules this module keeps:
- It is authoritative only, never a resolver: names outside the zone get REFUSED, RA is
  never set, nothing is looked up elsewhere.
- Unknown names get NXDOMAIN and known names without the asked type get NODATA, both with
  the SOA in authority (RFC 2308) so resolvers cache the negative answer.
- Zone transfers (AXFR, and IXFR answered in AXFR form: there is no journal) go over TCP
  to the clients in `dns.builtin.axfr_allow`; with a transfer key they must also be
  TSIG-signed with it (`signing.py` has checked the signature before `answer` runs), and
  with a key and an empty list the key alone admits. Anything else is REFUSED, as BIND
  answers a request its `allow-transfer` does not match.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.edns
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

# Re-exported: the lab topology and the zone renderer import it from here.
from rke2ha.dns.hostport import split_host_port as split_host_port
from rke2ha.dns.records import DesiredRecords, desired_records
from rke2ha.spec import Spec

# Our advertised EDNS0 buffer: the DNS flag day 2020 value that avoids IP fragmentation.
OUR_UDP_PAYLOAD = 1232
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 86400

Key = tuple[dns.name.Name, int]


@dataclass(frozen=True)
class ZoneSettings:
    """What the zone needs beyond the records: names, the serial, who may transfer."""

    nameserver: dns.name.Name
    nameserver_address: str | None  # glue, when the nameserver sits inside the zone
    serial: int
    axfr_allow: frozenset[str] = frozenset()
    # repr=False: dnspython's Key repr shows the secret, which must never reach a log.
    transfer_key: dns.tsig.Key | None = field(default=None, repr=False)


@dataclass
class Zone:
    """The RRsets of one zone, indexed by (name, type), and the answer logic."""

    origin: dns.name.Name
    rrsets: dict[Key, dns.rrset.RRset]
    axfr_allow: frozenset[str] = frozenset()
    transfer_key: dns.tsig.Key | None = field(default=None, repr=False)  # repr: the secret
    names: set[dns.name.Name] = field(init=False)
    negative_soa: dns.rrset.RRset = field(init=False)

    def __post_init__(self) -> None:
        self.names = {name for name, _ in self.rrsets}
        # RFC 2308 §3: the negative TTL is the lesser of the SOA's TTL and MINIMUM. Built
        # once: making RRsets is the slowest thing an answer does.
        soa = self.soa
        self.negative_soa = dns.rrset.from_rdata_list(
            soa.name, min(soa.ttl, soa[0].minimum), list(soa)
        )

    @property
    def soa(self) -> dns.rrset.RRset:
        return self.rrsets[(self.origin, dns.rdatatype.SOA)]

    def to_text(self) -> str:
        """The zone as a master file (for `named` in tests and benchmarks, or `render`)."""
        lines = [f"$ORIGIN {self.origin.to_text()}", self.soa.to_text()]
        for key, rrset in sorted(self.rrsets.items(), key=lambda item: item[0]):
            if key[1] != dns.rdatatype.SOA:
                lines.append(rrset.to_text())
        return "\n".join(lines) + "\n"

    # ---- answers ------------------------------------------------------------------------

    def answer(
        self, query: dns.message.Message, *, tcp: bool = False, client: str = ""
    ) -> dns.message.Message:
        """The response to one parsed query (sections, flags and rcode; size not applied)."""
        response = dns.message.make_response(query, our_payload=OUR_UDP_PAYLOAD)
        response.flags &= ~dns.flags.AA  # set below only for answers from our zone
        if query.edns > 0:
            # RFC 6891 §6.1.3: we speak EDNS version 0 only.
            response.set_rcode(dns.rcode.BADVERS)
            return response
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY) or not (
            qname.is_subdomain(self.origin)
        ):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._transfer(query, response, tcp=tcp, client=client)
        response.flags |= dns.flags.AA
        self._lookup(response, qname, qtype)
        return response

    def _lookup(self, response: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        cname = self.rrsets.get((qname, dns.rdatatype.CNAME))
        if cname is not None and qtype not in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
            response.answer.append(cname)
            target = cname[0].target
            if target.is_subdomain(self.origin) and target != qname:
                found = self.rrsets.get((target, qtype))
                if found is not None:
                    response.answer.append(found)
            return
        if qtype == dns.rdatatype.ANY:
            response.answer.extend(r for (n, _), r in self.rrsets.items() if n == qname)
        else:
            found = self.rrsets.get((qname, qtype))
            if found is not None:
                response.answer.append(found)
                if qtype == dns.rdatatype.NS:
                    self._add_glue(response, found)
        if response.answer:
            return
        if qname not in self.names and not self._is_empty_non_terminal(qname):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(self.negative_soa)

    def _add_glue(self, response: dns.message.Message, ns: dns.rrset.RRset) -> None:
        for rdata in ns:
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue = self.rrsets.get((rdata.target, rdtype))
                if glue is not None:
                    response.additional.append(glue)

    def _is_empty_non_terminal(self, qname: dns.name.Name) -> bool:
        return any(name.is_subdomain(qname) for name in self.names)

    def may_transfer(self, query: dns.message.Message, client: str) -> bool:
        """The transfer ACL: `axfr_allow` (when set, or when there is no key) and the key."""
        if self.transfer_key is None:
            return _allowed(client, self.axfr_allow)
        if not query.had_tsig or query.keyname != self.transfer_key.name:
            return False
        return not self.axfr_allow or _allowed(client, self.axfr_allow)

    def _transfer(
        self, query: dns.message.Message, response: dns.message.Message, *, tcp: bool, client: str
    ) -> dns.message.Message:
        ixfr = query.question[0].rdtype == dns.rdatatype.IXFR
        if not self.may_transfer(query, client) or (not tcp and not ixfr):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        if ixfr:
            # RFC 1995 §3: the client's current SOA travels in the authority section.
            theirs = [r for r in query.authority if r.rdtype == dns.rdatatype.SOA]
            if len(theirs) != 1 or theirs[0].name != self.origin:
                response.set_rcode(dns.rcode.FORMERR)
                return response
            # RFC 1995 §2: a client as new as we are, or asking over UDP, gets our SOA
            # alone (over UDP: "ask again over TCP"). §4: without a journal the rest get
            # the whole zone in AXFR form, which IXFR clients take as a full transfer.
            if not tcp or serial_at_least(theirs[0][0].serial, self.soa[0].serial):
                response.answer.append(self.soa)
                return response
        # One message: the zone is a handful of records (thousands of load balancer
        # addresses would be needed to pass 64 KiB), so the signing of later messages of a
        # transfer (RFC 8945 §5.3.1) never arises; the message is signed whole.
        response.answer.append(self.soa)
        response.answer.extend(
            rrset
            for (_, rdtype), rrset in sorted(self.rrsets.items(), key=lambda i: i[0])
            if rdtype != dns.rdatatype.SOA
        )
        response.answer.append(self.soa)
        return response


def serial_at_least(theirs: int, ours: int) -> bool:
    """`theirs` is equal to or newer than `ours` in RFC 1982 serial arithmetic (§3.2)."""
    return (theirs - ours) % 2**32 < 2**31


def _allowed(client: str, allow: Iterable[str]) -> bool:
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return False
    for entry in allow:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


# ---- building the zone ------------------------------------------------------------------


def settings_from_spec(
    spec: Spec, serial: int, transfer_key: dns.tsig.Key | None = None
) -> ZoneSettings:
    """Nameserver name (default ns1.<zone>), its glue from `dns.builtin.listen`, AXFR ACL.

    `transfer_key` is the key `dns.builtin.transfer_key` names, read by the caller (files
    are I/O, this module is not)."""
    zone = dns.name.from_text(spec.dns.zone)
    nameserver = (
        dns.name.from_text(spec.dns.builtin.nameserver)
        if spec.dns.builtin.nameserver
        else dns.name.from_text("ns1", zone)
    )
    glue = None
    if spec.dns.builtin.listen and nameserver.is_subdomain(zone):
        host = split_host_port(spec.dns.builtin.listen, 53)[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and not ip.is_unspecified:
            glue = str(ip)
    return ZoneSettings(
        nameserver, glue, serial, frozenset(spec.dns.builtin.axfr_allow), transfer_key
    )


def zone_from_records(desired: DesiredRecords, settings: ZoneSettings, ttl: int) -> Zone:
    """The Zone holding `desired` plus SOA, NS and the nameserver's glue."""
    origin = dns.name.from_text(desired.zone)
    rrsets: dict[Key, dns.rrset.RRset] = {}

    def put(name: dns.name.Name, rdtype: str, record_ttl: int, values: Iterable[str]) -> None:
        rrset = dns.rrset.from_text_list(name, record_ttl, "IN", rdtype, list(values))
        rrsets[(name, rrset.rdtype)] = rrset

    ns = settings.nameserver.to_text()
    soa = (
        f"{ns} hostmaster.{origin.to_text()} {settings.serial} "
        f"{SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {ttl}"
    )
    put(origin, "SOA", ttl, [soa])
    put(origin, "NS", ttl, [ns])
    if settings.nameserver_address is not None:
        rdtype = "A" if ipaddress.ip_address(settings.nameserver_address).version == 4 else "AAAA"
        put(settings.nameserver, rdtype, ttl, [settings.nameserver_address])
    for record in desired.all:
        put(dns.name.from_text(record.name), record.rdtype, record.ttl, record.values)
    return Zone(origin, rrsets, settings.axfr_allow, settings.transfer_key)


def build_zone(
    spec: Spec,
    serial: int,
    addresses: list[str] | None = None,
    ttl: int | None = None,
    transfer_key: dns.tsig.Key | None = None,
) -> Zone:
    """The zone the spec describes; `addresses`/`ttl` override the LB addresses (health)."""
    desired = desired_records(spec, addresses)
    if ttl is not None:
        desired = DesiredRecords(
            desired.zone,
            desired.hostname,
            tuple(type(r)(r.name, r.rdtype, ttl, r.values) for r in desired.address),
            desired.owner,
        )
    return zone_from_records(desired, settings_from_spec(spec, serial, transfer_key), spec.dns.ttl)
