"""`rke2ha dns check`: does the hostname resolve to the load balancer, with the right type?

Asks one server (`--server`, else the built-in server's listen address for provider
builtin, else the system's resolver) for the hostname and judges the answer against the
spec: an A record must answer with load balancer addresses only (with several, health
may leave some out, but at least one), never through a CNAME; a CNAME must point at the
expected target. An alias to an AWS NLB is an A answer whose addresses are the NLB's.
`judge` is pure; `ask` does the one query (UDP, TCP when truncated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from rke2ha.dns.hostport import resolve_host_port
from rke2ha.dns.records import absolute, address_values, check_in_zone, cname_target
from rke2ha.errors import InvalidError
from rke2ha.invocation import spec_command
from rke2ha.spec import Spec

TIMEOUT = 3.0


@dataclass
class Answer:
    """What a server said for the hostname: rcode, CNAME target and addresses."""

    rcode: str
    cname: str | None = None
    addresses: list[str] = field(default_factory=list)
    ttl: int | None = None


@dataclass
class CheckResult:
    ok: bool
    hostname: str
    expected_type: str
    expected: list[str]
    server: str
    answer: Answer
    problems: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "hostname": self.hostname,
            "expected_type": self.expected_type,
            "expected": self.expected,
            "server": self.server,
            "answer": {
                "rcode": self.answer.rcode,
                "cname": self.answer.cname,
                "addresses": self.answer.addresses,
                "ttl": self.answer.ttl,
            },
            "problems": self.problems,
        }


def expectation(spec: Spec) -> tuple[str, list[str]]:
    """("A", addresses) / ("CNAME", [target]) / ("ALIAS", [nlb name]) from the spec."""
    check_in_zone(spec)
    if spec.dns.record == "CNAME":
        return "CNAME", [cname_target(spec)]
    if spec.load_balancer.engine == "aws-nlb" and spec.dns.provider == "route53":
        return "ALIAS", [absolute(spec.load_balancer.address or "")]
    values = address_values(spec)
    return "A", sorted(values.get("A", []) + values.get("AAAA", []))


def server_command(spec: Spec) -> str:
    """The command that starts this spec's DNS server, as it runs from here: the lab
    serves its DNS under `up`, the built-in server runs as `dns serve`."""
    return (
        spec_command(spec, "up") if spec.provider == "lab" else spec_command(spec, "dns", "serve")
    )


def judge(
    hostname: str, kind: str, expected: list[str], answer: Answer, start: str | None = None
) -> list[str]:
    """The problems with `answer` (empty when it is right); `start`: the command that
    starts the DNS server (`server_command`) when that server is rke2ha's to start, for the
    hint when nothing answered; without it the hint is to ask a server that does answer."""
    if answer.rcode == "TIMEOUT" or answer.rcode.startswith("ERROR"):
        reason = "no answer" if answer.rcode == "TIMEOUT" else answer.rcode.lower()
        if start is None:
            return [
                f"{reason} for {hostname}: pass --server HOST:PORT of a DNS server that "
                f"answers for {hostname}"
            ]
        return [
            f"{reason} for {hostname}: is the DNS server running? Start it (`{start}`) "
            "or pass --server HOST:PORT"
        ]
    if answer.rcode != "NOERROR":
        return [f"{hostname} answered {answer.rcode}; the record is not published there"]
    problems = []
    if kind == "CNAME":
        if answer.cname is None:
            problems.append(f"{hostname} is not a CNAME (expected CNAME to {expected[0]})")
        elif absolute(answer.cname) != expected[0]:
            problems.append(f"{hostname} is a CNAME to {answer.cname}, expected {expected[0]}")
        return problems
    if answer.cname is not None:
        problems.append(f"{hostname} is a CNAME to {answer.cname}; expected an A record")
    if not answer.addresses:
        problems.append(f"{hostname} has no address records")
    elif kind == "A":
        strangers = sorted(set(answer.addresses) - set(expected))
        if strangers:
            problems.append(
                f"{hostname} resolves to {', '.join(strangers)}, not a load balancer address "
                f"({', '.join(expected)})"
            )
    return problems


def _parse(response: dns.message.Message, hostname: dns.name.Name) -> Answer:
    answer = Answer(dns.rcode.to_text(response.rcode()))
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == hostname:
            answer.cname = rrset[0].target.to_text()
        elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            answer.addresses += [rdata.address for rdata in rrset]
            answer.ttl = rrset.ttl if answer.ttl is None else min(answer.ttl, rrset.ttl)
    answer.addresses.sort()
    return answer


def ask(
    hostname: str,
    server: tuple[str, int] | None,
    rdtypes: list[str],
    timeout: float = TIMEOUT,
) -> Answer:
    """Query `server` (or the system resolver) for `hostname`'s `rdtypes`, merged."""
    name = dns.name.from_text(hostname)
    merged: Answer | None = None
    for rdtype in rdtypes:
        response: dns.message.Message
        try:
            if server is None:
                resolved = dns.resolver.Resolver().resolve(
                    name, rdtype, raise_on_no_answer=False, lifetime=timeout
                )
                response = resolved.response
            else:
                query = dns.message.make_query(name, rdtype)
                response, _ = dns.query.udp_with_fallback(
                    query, server[0], timeout=timeout, port=server[1]
                )
        except dns.resolver.NXDOMAIN:
            return Answer("NXDOMAIN")
        except dns.exception.Timeout:
            return Answer("TIMEOUT")
        except (dns.exception.DNSException, OSError) as err:
            return Answer(f"ERROR ({err})")
        answer = _parse(response, name)
        if merged is None or merged.rcode != "NOERROR":
            merged = answer
        else:
            merged.addresses = sorted(merged.addresses + answer.addresses)
            merged.cname = merged.cname or answer.cname
    assert merged is not None
    return merged


def default_server(spec: Spec, server: str | None) -> tuple[str, int] | None:
    if server is not None:
        return resolve_host_port(server, 53, "--server")
    if spec.dns.provider == "builtin" and spec.dns.builtin.listen:
        host, port = resolve_host_port(spec.dns.builtin.listen, 53, "dns.builtin.listen")
        return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), port
    return None


def check(spec: Spec, server: str | None = None) -> CheckResult:
    where = default_server(spec, server)
    try:
        kind, expected = expectation(spec)
    except InvalidError:
        raise
    hostname = absolute(spec.hostname)
    rdtypes = ["A", "AAAA"] if kind == "A" and any(":" in e for e in expected) else ["A"]
    answer = ask(hostname, where, rdtypes)
    # Only the lab's and the built-in server are rke2ha's to start (`rke2ha.check.target`).
    own = spec.provider == "lab" or spec.dns.provider == "builtin"
    problems = judge(hostname, kind, expected, answer, server_command(spec) if own else None)
    label = "system resolver"
    if where is not None:
        label = f"[{where[0]}]:{where[1]}" if ":" in where[0] else f"{where[0]}:{where[1]}"
    return CheckResult(not problems, hostname, kind, expected, label, answer, problems)
