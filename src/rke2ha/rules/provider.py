"""Rule `provider`: the blocks each provider needs are present, complete and alone.

`aws` creates the nodes and the NLB, so addresses are assigned and must not be given;
`existing` uses machines that are already there, so every address must be given; `lab`
runs everything on loopback addresses inside `lab.subnet`. DNS providers have their own
blocks, which only make sense with that DNS provider.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from rke2ha.addresses import is_ip
from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.spec import Spec


def _aws(spec: Spec) -> Iterator[Issue]:
    if spec.aws is None:
        yield error(
            "aws",
            "provider aws needs an `aws:` block (region, ami, rke2_version, ...)",
            f"add aws: {{region: {spec.region or 'us-east-1'}, ami: ami-..., "
            "rke2_version: v1.33.6+rke2r1}",
        )
    elif spec.region is not None and spec.region != spec.aws.region:
        yield error(
            "aws.region",
            f"aws.region {spec.aws.region} differs from region {spec.region}",
            "give both the same region (or drop `region`: it defaults to aws.region)",
        )
    for index, cidr in enumerate(spec.aws.allowed_cidrs if spec.aws is not None else []):
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield error(
                f"aws.allowed_cidrs[{index}]",
                f"{cidr!r} is not a CIDR block; the security group cannot be created",
                "write it as ADDRESS/PREFIX, e.g. 203.0.113.0/24 (0.0.0.0/0 for everyone)",
            )
            continue
        # The same CIDRs open every load balancer port: fine for Rancher's 80/443, but the
        # Kubernetes API and the node registration port then face the whole internet.
        exposed = sorted({6443, 9345} & set(spec.load_balancer.ports))
        if network.prefixlen == 0 and exposed:
            yield warning(
                f"aws.allowed_cidrs[{index}]",
                f"{cidr} opens {' and '.join(map(str, exposed))} (the Kubernetes API, node "
                "registration) to the whole internet, not only Rancher's 80/443",
                "list only your users' and admins' networks in aws.allowed_cidrs (the nodes "
                "reach each other without it), or accept the exposure knowingly",
            )
    if spec.load_balancer.engine != "aws-nlb":
        yield error(
            "load_balancer.engine",
            f"provider aws creates a Network Load Balancer, but engine is "
            f"{spec.load_balancer.engine}",
            "set load_balancer.engine: aws-nlb",
        )
    for index, node in enumerate(spec.nodes):
        if node.address is not None:
            yield error(
                f"nodes[{index}].address",
                f"node {node.name} has an address, but provider aws assigns node addresses",
                "remove the address; give each node a name and a zone",
            )
    if spec.load_balancer.address is not None:
        yield error(
            "load_balancer.address",
            "provider aws assigns the NLB's address (a DNS name), but one is given",
            "remove load_balancer.address",
        )
    if spec.load_balancer.pair is not None:
        yield error(
            "load_balancer.pair",
            "an AWS NLB is already redundant across zones; a keepalived pair does not apply",
            "remove load_balancer.pair",
        )


def _existing(spec: Spec) -> Iterator[Issue]:
    for index, node in enumerate(spec.nodes):
        if node.address is None:
            yield error(
                f"nodes[{index}].address",
                f"node {node.name} has no address; provider existing uses machines that "
                "already exist and must be told where they are",
                f"add the IP (or DNS name) of {node.name}",
            )
    if spec.load_balancer.address is None:
        yield error(
            "load_balancer.address",
            "provider existing needs the load balancer's address (the DNS record points "
            "at it, and every server gets it as a tls-san)",
            "set load_balancer.address to the IP (record A) or name (record CNAME) of "
            "the load balancer",
        )
    if spec.load_balancer.engine == "aws-nlb":
        yield error(
            "load_balancer.engine",
            "engine aws-nlb is created by provider aws only",
            "use engine haproxy, nginx or builtin, or provider aws",
        )


def _lab(spec: Spec) -> Iterator[Issue]:
    lab = spec.lab
    if spec.load_balancer.engine == "aws-nlb":
        yield error(
            "load_balancer.engine",
            "the lab runs its load balancer on this machine; aws-nlb is not available",
            "set load_balancer.engine: builtin",
        )
    if lab is None:
        return
    subnet = ipaddress.ip_network(lab.subnet, strict=False)
    named = [(f"nodes[{i}].address", n.address) for i, n in enumerate(spec.nodes)]
    named.append(("load_balancer.address", spec.load_balancer.address))
    for path, address in named:
        if address is not None and (
            not is_ip(address) or ipaddress.ip_address(address) not in subnet
        ):
            yield error(
                path,
                f"address {address} is outside lab.subnet {lab.subnet}; the lab only uses "
                "loopback addresses of its subnet",
                "remove the address (the lab assigns .10 to the load balancer and .11 "
                "upwards to the nodes), or use one inside lab.subnet",
            )
    if spec.dns.provider == "route53":
        yield error(
            "dns.provider",
            "the lab never sends a packet off the machine, so it cannot publish to Route 53",
            "use dns.provider: builtin in the lab",
        )
    rfc2136 = spec.dns.rfc2136
    if spec.dns.provider == "rfc2136" and rfc2136 is not None and not _is_loopback(rfc2136.server):
        yield error(
            "dns.rfc2136.server",
            f"the lab only talks to loopback addresses, but dns.rfc2136.server is {rfc2136.server}",
            "use a DNS server on 127.0.0.0/8, or dns.provider: builtin",
        )


def _is_loopback(address: str) -> bool:
    return is_ip(address) and ipaddress.ip_address(address).is_loopback


def _foreign_blocks(spec: Spec) -> Iterator[Issue]:
    for block, owner in (("aws", "aws"), ("lab", "lab")):
        if getattr(spec, block) is not None and spec.provider != owner:
            yield error(
                block,
                f"the `{block}:` block is only used by provider {owner}, but provider is "
                f"{spec.provider}",
                f"remove the `{block}:` block, or set provider: {owner}",
            )
    for block in ("rfc2136", "route53"):
        if getattr(spec.dns, block) is not None and spec.dns.provider != block:
            yield error(
                f"dns.{block}",
                f"dns.{block} is only used by dns.provider {block}, but dns.provider is "
                f"{spec.dns.provider}",
                f"remove dns.{block}, or set dns.provider: {block}",
            )


def _rfc2136(spec: Spec, facts: Facts) -> Iterator[Issue]:
    block = spec.dns.rfc2136
    if block is None:
        yield error(
            "dns.rfc2136",
            "dns.provider rfc2136 needs a dns.rfc2136 block naming the primary server and "
            "the TSIG key",
            "add rfc2136: {server: IP, key_name: NAME., key_file: FILE} under dns",
        )
        return
    path = spec.resolve(block.key_file)
    fact = facts.file(path)
    if not fact.exists or not fact.is_file:
        yield error(
            "dns.rfc2136.key_file",
            f"TSIG key file {path} does not exist; dynamic updates would be refused",
            f"write the base64 TSIG secret alone to {path} (mode 0600), e.g. from "
            "`tsig-keygen -a hmac-sha256 NAME`",
        )
    elif not fact.private:
        # An error, as for every secret file: `plan` and `up` refuse to read it.
        yield error(
            "dns.rfc2136.key_file",
            f"TSIG key file {path} is readable by others (mode {fact.mode or 0:o}); anyone "
            "who reads it can rewrite the zone",
            f"chmod 600 {path}",
        )


def _provider(spec: Spec, facts: Facts) -> Iterator[Issue]:
    by_provider = {"aws": _aws, "existing": _existing, "lab": _lab}
    yield from by_provider[spec.provider](spec)
    yield from _foreign_blocks(spec)
    if spec.dns.provider == "rfc2136":
        yield from _rfc2136(spec, facts)


RULES = (
    Rule(
        "provider",
        "provider-specific blocks present, complete and alone",
        f"{sources.README_SPEC}; {sources.README_LAB}; {sources.SECRETS}",
        _provider,
    ),
)
