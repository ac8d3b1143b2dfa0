"""The records the spec asks for: the hostname's A/AAAA or CNAME and the ownership TXT.

Every provider (the built-in server, RFC 2136, Route 53, manual) starts from the same
`DesiredRecords`, so a spec means the same record everywhere. The rules a record must
obey to exist at all (hostname inside the zone, A needs IPs, CNAME needs a hostname) are
checked here and reported naming the spec field at fault.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.name

from rke2ha.dns.ownership import ownership_name, ownership_value
from rke2ha.errors import InvalidError
from rke2ha.spec import Spec

ADDRESS_TYPES = ("A", "AAAA", "CNAME")


def absolute(name: str) -> str:
    """`name` lower-cased with exactly one trailing dot (the form every comparison uses)."""
    return name.strip().rstrip(".").lower() + "."


@dataclass(frozen=True)
class AliasTarget:
    """A Route 53 alias: the AWS resource's DNS name and the hosted zone it lives in."""

    dns_name: str
    hosted_zone_id: str


@dataclass(frozen=True)
class Record:
    """One RRset in provider-neutral form; `values` are rdata texts as in a zone file."""

    name: str
    rdtype: str
    ttl: int
    values: tuple[str, ...] = ()
    alias: AliasTarget | None = None

    def normalized(self) -> Record:
        """The same RRset with values sorted, so equal sets compare equal."""
        alias = self.alias
        if alias is not None:
            alias = AliasTarget(absolute(alias.dns_name), alias.hosted_zone_id)
        values = tuple(sorted(self.values, key=str.lower))
        return Record(absolute(self.name), self.rdtype.upper(), self.ttl, values, alias)

    def zone_lines(self) -> list[str]:
        """Zone-file lines (`name ttl IN type rdata`); an alias is shown as a comment."""
        if self.alias is not None:
            return [
                f"; {self.name} {self.rdtype} ALIAS {self.alias.dns_name} "
                f"(hosted zone {self.alias.hosted_zone_id})"
            ]
        return [f"{self.name} {self.ttl} IN {self.rdtype} {value}" for value in self.values]

    def as_dict(self) -> dict[str, object]:
        document: dict[str, object] = {
            "name": self.name,
            "type": self.rdtype,
            "ttl": self.ttl,
            "values": list(self.values),
        }
        if self.alias is not None:
            document["alias"] = {
                "dns_name": self.alias.dns_name,
                "hosted_zone_id": self.alias.hosted_zone_id,
            }
        return document


@dataclass(frozen=True)
class DesiredRecords:
    """What must exist for `hostname`: its address RRsets and the ownership TXT."""

    zone: str
    hostname: str
    address: tuple[Record, ...]
    owner: Record

    @property
    def all(self) -> tuple[Record, ...]:
        return (*self.address, self.owner)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_in_zone(spec: Spec) -> tuple[dns.name.Name, dns.name.Name]:
    """The zone and hostname as names; the hostname must sit inside the zone."""
    try:
        zone = dns.name.from_text(spec.dns.zone)
        hostname = dns.name.from_text(spec.hostname)
    except dns.exception.DNSException as err:
        raise InvalidError(f"hostname/dns.zone: not a valid DNS name: {err}") from None
    if not hostname.is_subdomain(zone) or hostname == zone:
        raise InvalidError(
            f"hostname {spec.hostname} is not inside dns.zone {spec.dns.zone}; "
            "set dns.zone to the zone that holds the Rancher hostname"
        )
    return zone, hostname


def address_values(spec: Spec, addresses: list[str] | None = None) -> dict[str, list[str]]:
    """The A and AAAA values for `addresses` (default: every load balancer address)."""
    addresses = spec.load_balancer.addresses if addresses is None else addresses
    if not addresses:
        raise InvalidError(
            "load_balancer.address is not set; give the load balancer's IP "
            "(or run `rke2ha up` first when the provider assigns it)"
        )
    by_type: dict[str, list[str]] = {"A": [], "AAAA": []}
    for address in addresses:
        ip = _ip(address)
        if ip is None:
            raise InvalidError(
                f"load_balancer address {address!r} is a hostname, but dns.record is A; "
                "set dns.record: CNAME to point the hostname at it"
            )
        by_type["A" if ip.version == 4 else "AAAA"].append(str(ip))
    return {rdtype: values for rdtype, values in by_type.items() if values}


def cname_target(spec: Spec) -> str:
    """The CNAME target: `dns.target`, else the load balancer's hostname."""
    target = spec.dns.target or spec.load_balancer.address
    if not target:
        raise InvalidError(
            "dns.record is CNAME but neither dns.target nor load_balancer.address is set; "
            "give the load balancer's hostname in dns.target"
        )
    if _ip(target) is not None:
        raise InvalidError(
            f"dns.record is CNAME but its target {target} is an IP address; "
            "use dns.record: A, or set dns.target to the load balancer's hostname"
        )
    return absolute(target)


def desired_records(spec: Spec, addresses: list[str] | None = None) -> DesiredRecords:
    """The records the spec asks for; `addresses` overrides the load balancer's (health)."""
    zone, hostname = check_in_zone(spec)
    ttl = spec.dns.ttl
    host = hostname.to_text().lower()
    if spec.dns.record == "CNAME":
        address: tuple[Record, ...] = (Record(host, "CNAME", ttl, (cname_target(spec),)),)
    else:
        address = tuple(
            Record(host, rdtype, ttl, tuple(values))
            for rdtype, values in address_values(spec, addresses).items()
        )
    return DesiredRecords(zone.to_text().lower(), host, address, owner_record(spec))


def owner_record(spec: Spec) -> Record:
    """The ownership TXT for the spec's hostname and cluster."""
    host = absolute(spec.hostname)
    return Record(ownership_name(host), "TXT", spec.dns.ttl, (f'"{ownership_value(spec.name)}"',))
