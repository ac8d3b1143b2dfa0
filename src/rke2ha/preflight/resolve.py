"""The Rancher hostname and the load balancer's address as each node resolves them.

Servers after the first join through `https://<hostname>:9345` (rke2ha's config.yaml), so
on every node the hostname must lead to the load balancer. Before `up` publishes the record
it may not resolve yet (a warning); resolving to anything else is an error. A load balancer
address that is a DNS name must resolve on every node. Sans-I/O: the runner runs `command`.
"""

from __future__ import annotations

import shlex

from rke2ha.addresses import is_ip
from rke2ha.preflight import sources
from rke2ha.preflight.checks import stamp
from rke2ha.preflight.finding import NodeFinding, Problem

LOOKUP_TIMEOUT = 5  # seconds per name (resolv.conf may name a server that never answers)


def command(names: list[str]) -> str:
    """One `name address...` line per name (`getent ahostsv4`; empty when it fails)."""
    return "; ".join(
        f"printf '%s' {shlex.quote(n)}; timeout {LOOKUP_TIMEOUT} getent ahostsv4 "
        f"{shlex.quote(n)} | awk '{{print \" \" $1}}' | sort -u | tr -d '\\n'; echo"
        for n in names
    )


def parse(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        fields = line.split()
        if fields:
            found[fields[0]] = sorted(set(fields[1:]))
    return found


def names_to_resolve(hostname: str, lb_addresses: list[str]) -> list[str]:
    return [hostname] + [a for a in lb_addresses if not is_ip(a)]


def judge(
    node: str, index: int, hostname: str, lb_addresses: list[str], resolved: dict[str, list[str]],
    dns_manual: bool,
) -> tuple[str, list[NodeFinding]]:  # fmt: skip
    """(value, findings) of one node's answers."""
    expected: set[str] = set()
    findings = []
    for address in lb_addresses:
        if is_ip(address):
            expected.add(address)
            continue
        got = resolved.get(address, [])
        expected.update(got)
        if not got:
            findings.append(stamp("node.resolve", node, index, f"{address}: no answer", Problem(
                "error",
                f"{node} cannot resolve the load balancer address {address}",
                f"make {address} resolvable on {node} (its resolv.conf or /etc/hosts)",
            ), sources.RESOLVE))  # fmt: skip
    got = resolved.get(hostname, [])
    value = f"{hostname} -> {', '.join(got) or 'no answer'}"
    if not got:
        how = ("add the records `rke2ha dns publish` prints (dns.provider manual)" if dns_manual
               else "rke2ha up publishes it; until then servers 2 and 3 cannot join")  # fmt: skip
        findings.append(stamp("node.resolve", node, index, value, Problem(
            "warning", f"{hostname} does not resolve on {node} yet", how,
        ), sources.RESOLVE))  # fmt: skip
    elif expected and not set(got) <= expected:
        wrong = sorted(set(got) - expected)
        findings.append(stamp("node.resolve", node, index, value, Problem(
            "error",
            f"on {node}, {hostname} resolves to {', '.join(wrong)}, not the load balancer "
            f"({', '.join(sorted(expected))}); servers joining through it would go elsewhere",
            f"fix the record or the override on {node} (/etc/hosts, its DNS server)",
        ), sources.RESOLVE))  # fmt: skip
    return value, findings
