"""Rules about the DNS record: no CNAME at the apex, and a target of the right kind."""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.addresses import is_ip
from rke2ha.dns.notify import parse_target
from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.rules.names import hostname_problem, in_zone, is_ipv4
from rke2ha.spec import Spec


def _cname_apex(spec: Spec, facts: Facts) -> Iterator[Issue]:
    if spec.dns.record != "CNAME" or hostname_problem(spec.hostname) is not None:
        return
    if in_zone(spec.hostname, spec.dns.zone) and in_zone(spec.dns.zone, spec.hostname):
        alias = " (or keep A: provider aws publishes it as an alias)" * (
            spec.load_balancer.engine == "aws-nlb"
        )
        yield error(
            "dns.record",
            f"{spec.hostname} is the apex of zone {spec.dns.zone}, which holds SOA and NS "
            "records; a CNAME cannot sit beside them",
            f"use record: A with the load balancer's IP{alias}, or a hostname below the "
            f"apex such as rancher.{spec.dns.zone}",
        )


def _a_targets(spec: Spec) -> Iterator[Issue]:
    lb = spec.load_balancer
    if spec.dns.target is not None:
        yield warning(
            "dns.target",
            "dns.target is only used by CNAME records; with record: A it is ignored",
            "remove dns.target, or use record: CNAME",
        )
    if lb.address is None:
        return  # assigned by the provider, or a missing address: provider's finding
    if lb.engine == "aws-nlb" and not is_ip(lb.address):
        return  # published as a Route 53 alias to the NLB's DNS name
    for index, address in enumerate(lb.addresses):
        path = (
            "load_balancer.address" if index == 0 else f"load_balancer.extra_addresses[{index - 1}]"
        )
        if is_ipv4(address):
            continue
        kind = "an IPv6 address (that is an AAAA record)" if is_ip(address) else "a hostname"
        yield error(
            path,
            f"an A record holds an IPv4 address, but the load balancer address {address} is {kind}",
            "use record: CNAME for a load balancer known by name, or give its IPv4 address",
        )


def _cname_target(spec: Spec) -> Iterator[Issue]:
    lb = spec.load_balancer
    target = spec.dns.target or lb.address
    path = "dns.target" if spec.dns.target else "load_balancer.address"
    if lb.extra_addresses:
        yield error(
            "load_balancer.extra_addresses",
            "a CNAME points at exactly one name, so extra load balancer addresses cannot be "
            "published beside it",
            "use record: A with every IP, or put the addresses behind one name",
        )
    if target is None:
        if lb.engine != "aws-nlb":
            yield error(
                "dns.target",
                "a CNAME needs a target hostname, and neither dns.target nor "
                "load_balancer.address is set",
                "set dns.target to the load balancer's DNS name",
            )
        return
    if is_ip(target):
        yield error(
            path,
            f"a CNAME holds a hostname, but its target {target} is an IP address",
            "use record: A for an IP, or set dns.target to the load balancer's DNS name",
        )
    elif target.rstrip(".").lower() == spec.hostname.lower():
        yield error(
            path,
            f"the CNAME target {target} is the hostname itself: a loop",
            "set dns.target to the load balancer's DNS name",
        )


def _record_target(spec: Spec, facts: Facts) -> Iterator[Issue]:
    yield from _a_targets(spec) if spec.dns.record == "A" else _cname_target(spec)


def _builtin_transfer(spec: Spec, facts: Facts) -> Iterator[Issue]:
    builtin = spec.dns.builtin
    for index, text in enumerate(builtin.notify):
        try:
            parse_target(text)
        except ValueError as err:
            yield error(
                f"dns.builtin.notify[{index}]",
                f"{err}; NOTIFY is sent to a secondary's address",
                "write the secondary's IP or IP:PORT (port 53 when left out), e.g. 192.0.2.53",
            )
    key = builtin.transfer_key
    if key is None:
        if builtin.notify and not builtin.axfr_allow:
            yield warning(
                "dns.builtin.notify",
                "the notified secondaries cannot transfer the zone: axfr_allow is empty and "
                "there is no transfer_key",
                "add a transfer_key (TSIG), or the secondaries' IPs to dns.builtin.axfr_allow",
            )
        return
    field = "dns.builtin.transfer_key.key_file"
    path = spec.resolve(key.key_file)
    fact = facts.file(path)
    if not fact.exists or not fact.is_file:
        yield error(
            field,
            f"TSIG key file {path} does not exist; `rke2ha dns serve` cannot start without it",
            f"write the base64 TSIG secret alone to {path} (mode 0600): the `secret` value "
            f"of `tsig-keygen -a {key.algorithm} {key.name}`",
        )
    elif not fact.private:
        yield error(
            field,
            f"TSIG key file {path} is readable by others (mode {fact.mode or 0:o}); anyone "
            "who reads it can transfer the zone, and `rke2ha dns serve` refuses it",
            f"chmod 600 {path}",
        )
    elif path in facts.bad_tsig_secrets:
        yield error(
            field,
            f"TSIG key file {path} {facts.bad_tsig_secrets[path]}",
            "put the key's base64 secret alone in the file (the `secret` value of "
            "`tsig-keygen` output)",
        )


RULES = (
    Rule("dns.cname_apex", "no CNAME at the zone apex", sources.CNAME_APEX, _cname_apex),
    Rule(
        "dns.record_target",
        "A to an IP (or an NLB alias), CNAME to a hostname",
        f"{sources.TUTORIAL}; {sources.RECORD_TYPES}; {sources.ROUTE53_ALIAS}",
        _record_target,
    ),
    Rule(
        "dns.builtin_transfer",
        "the built-in server's transfer key is a private base64 secret; NOTIFY goes to IPs",
        f"{sources.SECRETS}; {sources.TSIG}; {sources.NOTIFY}",
        _builtin_transfer,
    ),
)
