"""Publish into the operator's DNS primary with TSIG-signed dynamic updates (RFC 2136).

Facts are read with TSIG-signed queries over TCP to the primary itself (never a cache):
the hostname's A, AAAA and CNAME and the ownership TXT. Only an authoritative NOERROR or
NXDOMAIN counts as an answer; REFUSED, NOTAUTH, SERVFAIL, a bad signature or a timeout
is an error, never "the zone is empty".

Each plan is one UPDATE message, so the server applies it whole or not at all, and its
prerequisites (RFC 2136 §2.4) are the ownership rules of `publish.py`:
- CREATE: the hostname and the ownership name are not in use;
- UPDATE / DELETE: our ownership TXT is present with our value;
- ADOPT: the records are still exactly those we saw (value-dependent RRset exists), and
  the marker too (or its absence).
"""

from __future__ import annotations

import ipaddress
import socket

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

from rke2ha.dns.publish import Action, Observed, Plan
from rke2ha.dns.records import ADDRESS_TYPES, DesiredRecords, Record
from rke2ha.dns.tsigkey import Tsig, load_tsig
from rke2ha.errors import InvalidError, UsageError
from rke2ha.spec import Spec

TIMEOUT = 10.0


class Rfc2136Error(InvalidError):
    """The primary refused, failed or could not be reached (exit 1)."""


def read_tsig(spec: Spec) -> Tsig:
    """The TSIG key from `dns.rfc2136.key_file` (base64 secret alone, mode 0600)."""
    config = spec.dns.rfc2136
    if config is None:
        raise UsageError("dns.provider is rfc2136 but the dns.rfc2136 block is missing; add it")
    return load_tsig(
        spec.resolve(config.key_file), config.key_name, config.algorithm, "dns.rfc2136.key_file"
    )


def server_address(host: str, port: int) -> str:
    """The primary's IP: `host` itself, or what the system resolver makes of it."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError as err:
        raise Rfc2136Error(f"dns.rfc2136.server {host}: cannot resolve it: {err}") from None


class Rfc2136Publisher:
    provider = "rfc2136"

    def __init__(self, spec: Spec, timeout: float = TIMEOUT) -> None:
        config = spec.dns.rfc2136
        self.tsig = read_tsig(spec)
        assert config is not None
        self.where = server_address(config.server, config.port)
        self.port = config.port
        self.label = f"{config.server}:{config.port}"
        self.zone = dns.name.from_text(spec.dns.zone)
        self.cluster = spec.name
        self.timeout = timeout

    # ---- talking to the primary --------------------------------------------------------

    def _exchange(self, message: dns.message.Message, what: str) -> dns.message.Message:
        try:
            return dns.query.tcp(message, self.where, timeout=self.timeout, port=self.port)
        except dns.tsig.PeerBadKey:
            raise Rfc2136Error(
                f"{self.label} rejected the TSIG key {self.tsig.name} (BADKEY) during {what}: "
                "the server does not know this key name/algorithm; check dns.rfc2136.key_name "
                "and algorithm against the server's key"
            ) from None
        except (dns.tsig.PeerBadSignature, dns.tsig.BadSignature):
            raise Rfc2136Error(
                f"{self.label} rejected the TSIG signature (BADSIG) during {what}: the secret "
                "in dns.rfc2136.key_file does not match the server's key"
            ) from None
        except (dns.tsig.PeerBadTime, dns.tsig.BadTime):
            raise Rfc2136Error(
                f"{self.label}: TSIG time check failed (BADTIME) during {what}; "
                "synchronise this machine's clock with the server's"
            ) from None
        except dns.exception.Timeout:
            raise Rfc2136Error(f"{self.label}: no answer within {self.timeout}s ({what})") from None
        except EOFError:
            raise Rfc2136Error(
                f"{self.label}: the server closed the connection without answering ({what}); "
                "check that dns.rfc2136.server is the zone's primary and answers DNS over TCP "
                f"on port {self.port}"
            ) from None
        except (dns.exception.DNSException, OSError) as err:
            raise Rfc2136Error(f"{self.label}: {what} failed: {err}") from None

    def _query(self, name: str, rdtype: str) -> Record | None:
        query = dns.message.make_query(name, rdtype)
        query.use_tsig(self.tsig.keyring, keyname=self.tsig.name, algorithm=self.tsig.algorithm)
        response = self._exchange(query, f"reading {name} {rdtype}")
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise Rfc2136Error(
                f"{self.label} answered {dns.rcode.to_text(rcode)} to a query for {name} "
                f"{rdtype}; it must be the primary for {self.zone} and allow queries "
                "signed with the key (an error is never taken for an empty zone)"
            )
        if not response.flags & dns.flags.AA:
            raise Rfc2136Error(
                f"{self.label} is not authoritative for {self.zone} (no AA flag on the answer "
                f"for {name}); point dns.rfc2136.server at the zone's primary"
            )
        wanted = dns.name.from_text(name)
        for rrset in response.answer:
            if rrset.name == wanted and rrset.rdtype == dns.rdatatype.from_text(rdtype):
                values = tuple(rdata.to_text() for rdata in rrset)
                return Record(name, rdtype, rrset.ttl, values)
        return None

    def describe(self, desired: DesiredRecords) -> Observed:
        self._query(self.zone.to_text(), "SOA")  # the server really serves the zone
        address = tuple(
            record
            for rdtype in ADDRESS_TYPES
            if (record := self._query(desired.hostname, rdtype)) is not None
        )
        return Observed(address, self._query(desired.owner.name, "TXT"))

    # ---- the update ----------------------------------------------------------------------

    def update_message(self, plan: Plan) -> dns.update.UpdateMessage:
        """The one UPDATE message (prerequisites + changes) for `plan`."""
        update = dns.update.UpdateMessage(
            self.zone,
            keyring=self.tsig.keyring,
            keyname=self.tsig.name,
            keyalgorithm=self.tsig.algorithm,
        )
        desired, observed = plan.desired, plan.observed
        host, owner = desired.hostname, desired.owner
        ours = _rdataset(owner)
        ours_condition = _condition(owner)
        if plan.action is Action.CREATE:
            update.absent(host)
            update.absent(owner.name)
        elif plan.action in (Action.UPDATE, Action.DELETE):
            update.present(owner.name, ours_condition)
        elif plan.action is Action.ADOPT:
            for record in observed.address:
                update.present(record.name, _condition(record))
            if observed.owner is not None:
                update.present(owner.name, _condition(observed.owner))
            else:
                update.absent(owner.name, "TXT")
        if plan.action is Action.DELETE:
            for rdtype in ADDRESS_TYPES:
                update.delete(host, rdtype)
            update.delete(owner.name, ours)
            return update
        if plan.action is not Action.CREATE:
            for rdtype in ADDRESS_TYPES:
                update.delete(host, rdtype)
        if plan.action is Action.ADOPT:
            update.delete(owner.name, "TXT")
        for record in desired.address:
            update.add(record.name, _rdataset(record))
        update.add(owner.name, ours)
        return update

    def apply(self, plan: Plan) -> None:
        response = self._exchange(self.update_message(plan), "the update")
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        raise Rfc2136Error(_update_failure(self.label, plan, rcode))


def _rdataset(record: Record, ttl: int | None = None) -> dns.rdataset.Rdataset:
    ttl = record.ttl if ttl is None else ttl
    return dns.rdataset.from_text_list("IN", record.rdtype, ttl, list(record.values))


def _condition(record: Record) -> dns.rdataset.Rdataset:
    """`record` as a value-dependent prerequisite, whose TTL must be zero (RFC 2136 §2.4.2)."""
    return _rdataset(record, ttl=0)


def _update_failure(label: str, plan: Plan, rcode: int) -> str:
    name = dns.rcode.to_text(dns.rcode.Rcode(rcode))
    if rcode in (dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET):
        return (
            f"{label} refused the {plan.action} of {plan.desired.hostname}: its condition no "
            f"longer holds ({name}): the records changed since they were read; nothing was "
            "changed. Run again to see the current state"
        )
    if rcode == dns.rcode.REFUSED:
        return (
            f"{label} REFUSED the update: the zone must allow updates signed with this key "
            "(BIND: `update-policy` or `allow-update { key ...; }`)"
        )
    if rcode == dns.rcode.NOTAUTH:
        return f"{label} is not authoritative for the zone (NOTAUTH); use the zone's primary"
    if rcode == dns.rcode.NOTZONE:
        return f"{label}: {plan.desired.hostname} is not inside the zone (NOTZONE)"
    return f"{label} answered {name} to the update; nothing was changed"
