"""What a spec with `load_balancer.hosts` must also say, for `validate` and for `up`. Pure.

HAProxy or nginx, at layer 4 or 7, on one host, or on two sharing `load_balancer.address`
as a keepalived virtual IP; each missing piece is named with the field at fault, so a spec
that asks for more is refused before anything is touched. What layer 7 and the health
token need on a host (the certificate, the token's environment file) is installed with the
config (`lbhost.files`); a layer 7 spec without `load_balancer.tls` is refused by the rule
`lb.layer7_tls` and by the renderer, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from rke2ha.addresses import is_ip
from rke2ha.errors import InvalidError
from rke2ha.spec import Spec

SUPPORTED_ENGINES = ("haproxy", "nginx")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str


def problems(spec: Spec) -> list[Problem]:
    lb = spec.load_balancer
    if not lb.hosts:
        return []
    found: list[Problem] = []
    if spec.provider != "existing":
        found.append(
            Problem(
                "load_balancer.hosts",
                f"load_balancer.hosts is used by provider existing only, not {spec.provider}",
                "remove load_balancer.hosts, or use provider: existing",
            )
        )
    if lb.engine not in SUPPORTED_ENGINES:
        found.append(
            Problem(
                "load_balancer.engine",
                f"engine {lb.engine} on load_balancer.hosts is not yet supported (haproxy and "
                "nginx are)",
                "use engine: haproxy or nginx with load_balancer.hosts, or remove hosts to run "
                f"{lb.engine} on this machine",
            )
        )
    if spec.ssh is None:
        found.append(
            Problem(
                "ssh",
                "load_balancer.hosts are reached over SSH, but the spec has no ssh: block",
                "add an ssh: block (user, identity_file, known_hosts)",
            )
        )
    if len(lb.hosts) == 1:
        host = lb.hosts[0]
        if lb.address != host.address:
            found.append(
                Problem(
                    "load_balancer.address",
                    f"with one load balancer host, clients must reach it: "
                    f"load_balancer.address {lb.address} is not load_balancer.hosts[0].address "
                    f"{host.address}",
                    f"set load_balancer.address: {host.address}",
                )
            )
    else:
        found += _pair_problems(spec)
    found += _distinct_addresses(spec)
    return found


def _pair_problems(spec: Spec) -> list[Problem]:
    """Two hosts: keepalived moves `load_balancer.address` between them (`vrrp`)."""
    lb = spec.load_balancer
    found: list[Problem] = []
    if lb.vrrp is None:
        found.append(
            Problem(
                "load_balancer.vrrp",
                "two load balancer hosts share load_balancer.address as a keepalived virtual "
                "IP, which needs a VRRP password",
                "add load_balancer.vrrp.auth_file: a file (mode 0600) holding the password",
            )
        )
    own = {host.address for host in lb.hosts}
    if not lb.address or not is_ip(lb.address) or lb.address in own:
        found.append(
            Problem(
                "load_balancer.address",
                f"with two load balancer hosts, load_balancer.address {lb.address} must be an "
                "IP address of its own (the virtual IP), not a host's address",
                "set load_balancer.address to a free IP on the hosts' network",
            )
        )
    for index, host in enumerate(lb.hosts):
        if not is_ip(host.address):
            found.append(
                Problem(
                    f"load_balancer.hosts[{index}].address",
                    f"{host.address} is not an IP address; keepalived's unicast peers are IPs",
                    "give the host's IP address (ssh.host may still name it)",
                )
            )
    return found


def _distinct_addresses(spec: Spec) -> list[Problem]:
    """Two hosts on one address are one machine counted twice: no standby at all.

    (Two hosts with one name are refused by the schema already.)
    """
    found: list[Problem] = []
    seen: dict[str, int] = {}
    for index, host in enumerate(spec.load_balancer.hosts):
        first = seen.setdefault(host.address.lower(), index)
        if first != index:
            found.append(
                Problem(
                    f"load_balancer.hosts[{index}].address",
                    f"load_balancer.hosts[{index}] ({host.name}) has the address {host.address} "
                    f"of load_balancer.hosts[{first}]; one machine counted twice gives no "
                    "standby",
                    "give every load balancer host the address of its own machine",
                )
            )
    return found


def require(spec: Spec) -> None:
    """InvalidError naming every problem (before `plan`/`up` reach a host)."""
    found = problems(spec)
    if found:
        lines = "\n".join(f"  {p.path}: {p.message}; fix: {p.fix}" for p in found)
        raise InvalidError(f"load_balancer.hosts cannot be set up as the spec says:\n{lines}")
