"""`keepalived/<role>/keepalived.conf`: a VRRP pair sharing the load balancer's address.

Rendered only when `load_balancer.pair` is set: the answer for operators who cannot accept
one load balancer host as a single point of failure. The primary (MASTER, priority 150)
holds `load_balancer.address` as the virtual IP; the standby (BACKUP, priority 100) takes it
over when the primary stops advertising or its engine process dies (`vrrp_script` +
`track_script`: a failing script puts the instance in FAULT, which releases the address).

One file per host rather than one file with two instances: each host must run exactly one
role, and a file that is right on one host and wrong on the other is an outage waiting for
a copy-paste. When both hosts are given as IP addresses the pair uses unicast VRRP, which
works in clouds and networks that drop multicast.
"""

from __future__ import annotations

from dataclasses import dataclass

from rke2ha.addresses import is_ip
from rke2ha.errors import InvalidError
from rke2ha.render.common import commented, header_lines
from rke2ha.spec import LoadBalancerPair, Spec

ENGINE_PROCESS = {
    "haproxy": "/usr/bin/pgrep -x haproxy",
    "nginx": "/usr/bin/pgrep -x nginx",
    "builtin": "/usr/bin/pgrep -f 'rke2ha lb serve'",
}
PRIORITY = {"primary": 150, "standby": 100}
SCRIPT_INTERVAL, SCRIPT_FALL, SCRIPT_RISE = 2, 2, 2


@dataclass(frozen=True)
class PairHost:
    role: str  # primary | standby
    host: str
    peer: str


def pair_hosts(pair: LoadBalancerPair) -> list[PairHost]:
    return [
        PairHost("primary", pair.primary, pair.standby),
        PairHost("standby", pair.standby, pair.primary),
    ]


def _check_pair(spec: Spec) -> LoadBalancerPair:
    lb = spec.load_balancer
    if lb.pair is None:
        raise InvalidError("load_balancer.pair is not set; keepalived is only for an LB pair")
    if not lb.address or not is_ip(lb.address):
        raise InvalidError(
            f"load_balancer.address {lb.address!r} must be an IP address: it is the virtual "
            "IP the keepalived pair moves between load_balancer.pair.primary and .standby"
        )
    if lb.engine not in ENGINE_PROCESS:
        raise InvalidError(
            f"load_balancer.engine {lb.engine} runs no process on the pair's hosts; "
            "use haproxy, nginx or builtin with load_balancer.pair"
        )
    if lb.pair.primary == lb.pair.standby:
        raise InvalidError("load_balancer.pair.primary and .standby must be different hosts")
    return lb.pair


def _block(title: str, body: list[str], indent: str = "    ") -> list[str]:
    return [f"{title} {{", *(f"{indent}{line}" for line in body), "}"]


def render_keepalived(spec: Spec, spec_label: str, role: str) -> str:
    """keepalived.conf for the pair host playing `role` (primary or standby)."""
    pair = _check_pair(spec)
    me = next(host for host in pair_hosts(pair) if host.role == role)
    engine = spec.load_balancer.engine
    instance = f"rke2ha_{spec.name}".replace("-", "_")
    notes = [
        *header_lines(
            spec_label,
            f"keepalived for the {role} load balancer {me.host} "
            f"(virtual IP {spec.load_balancer.address})",
        ),
        f"Install on {me.host} as /etc/keepalived/keepalived.conf; "
        f"the peer {me.peer} gets the other file.",
    ]
    lines = [*commented(notes), ""]
    lines += _block(
        "global_defs",
        [f"router_id {instance}_{role}", "enable_script_security", "script_user root"],
    )
    lines.append("")
    script = f"chk_{engine}"
    lines += _block(
        f"vrrp_script {script}",
        [
            f'script "{ENGINE_PROCESS[engine]}"',
            f"interval {SCRIPT_INTERVAL}",
            f"fall {SCRIPT_FALL}",
            f"rise {SCRIPT_RISE}",
        ],
    )
    lines.append("")
    body = [
        # Both start as BACKUP-or-MASTER by priority; the higher priority wins the address.
        f"state {'MASTER' if role == 'primary' else 'BACKUP'}",
        f"interface {pair.interface}",
        f"virtual_router_id {pair.virtual_router_id}",
        f"priority {PRIORITY[role]}",
        "advert_int 1",
    ]
    if is_ip(me.host) and is_ip(me.peer):
        body += [f"unicast_src_ip {me.host}", *_block("unicast_peer", [me.peer])]
    body += _block("virtual_ipaddress", [str(spec.load_balancer.address)])
    body += _block("track_script", [script])
    lines += _block(f"vrrp_instance {instance}", body)
    return "\n".join(lines) + "\n"


def keepalived_files(spec: Spec, spec_label: str) -> dict[str, str]:
    """{relative path: text} for both hosts of the pair; empty without a pair."""
    if spec.load_balancer.pair is None:
        return {}
    return {
        f"keepalived/{role}/keepalived.conf": render_keepalived(spec, spec_label, role)
        for role in PRIORITY
    }
