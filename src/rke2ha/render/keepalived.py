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
from rke2ha.healthplan import port_health
from rke2ha.render.common import DEFAULT_LAYOUT, commented, header_lines, host_port, node_address
from rke2ha.render.haproxy import INGRESS_BACKEND
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


# --- Two `load_balancer.hosts` (rke2ha installs and runs keepalived there) -----------------

TRACK_SCRIPT_PATH = "/etc/keepalived/rke2ha-track.py"
HOST_PRIORITY = (150, 100)  # hosts[0], hosts[1]: the first holds the address when both can
HOST_SCRIPT = "chk_rke2ha_backend"
# A script killed after `timeout` seconds counts as failed; `fall` failures in a row put the
# instance in FAULT, which gives the address up (priority 0 advert: the peer takes it at
# once). Two misses at one second stay under the 3 s the pair is meant to move within: a
# stopped engine fails the script at once (its socket refuses), so only a slow run waits for
# the timeout. That timeout is 2 s, not 1: a python3 start on a loaded host took over 1 s in
# a drill run and a healthy new holder went to FAULT, leaving the address with no holder.
HOST_SCRIPT_INTERVAL, HOST_SCRIPT_TIMEOUT, HOST_SCRIPT_FALL, HOST_SCRIPT_RISE = 1, 2, 2, 2

# Shipped to both hosts as TRACK_SCRIPT_PATH: passes (exit 0) only while the local engine
# can serve: HAProxy answers on its runtime API and reports a server UP in at least one of
# the given backends (nginx: `track_command`). A running engine whose nodes are all down
# fails it too, not only a dead process.
#
# Which backends: every port the spec balances (`track_backends`), not 443 alone. While RKE2
# is bootstrapped no ingress runs yet, so no node passes the 80/443 check; yet the servers
# after the first register through the fixed registration address on 9345, and the same
# address serves the Kubernetes API on 6443 (docs.rke2.io/install/ha: "Configure the Fixed
# Registration Address"; the server listens on 9345 for new nodes). Tracking 443 only, no
# host would hold the address exactly when the joins need it. A node is UP behind 9345 only
# while its supervisor answers /ping and its apiserver answers (`rke2ha.healthplan`), so a
# host tracking it still proves it can carry the registration traffic.
TRACK_SCRIPT = '''\
#!/usr/bin/python3
"""rke2ha: keepalived track script; exit 0 only while the local engine can serve.
  haproxy SOCKET BACKEND...: HAProxy answers `show stat` on its runtime API SOCKET and
    reports a server UP in one of the BACKENDs;
  connect PIDFILE HOST:PORT...: the engine whose master's pid is in PIDFILE runs, and one
    of the HOST:PORT upstreams accepts a TCP connection from this host.
Installed by rke2ha; `rke2ha down` removes it."""
import os
import socket
import sys
import threading


def haproxy(path, backends):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.8)
            sock.connect(path)
            sock.sendall(b"show stat\\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as err:
        print(f"no answer from HAProxy on {path}: {err}", file=sys.stderr)
        return False
    rows = [line.split(",") for line in data.decode(errors="replace").splitlines()]
    return any(len(r) > 17 and r[0] in backends and r[1] not in ("FRONTEND", "BACKEND")
               and r[17].startswith("UP") for r in rows)


def connect(pidfile, upstreams):
    try:
        with open(pidfile) as handle:
            os.kill(int(handle.read().strip()), 0)
    except (OSError, ValueError) as err:
        print(f"no engine running ({pidfile}: {err})", file=sys.stderr)
        return False
    reached = threading.Event()

    def attempt(target):
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=0.7).close()
            reached.set()
        except (OSError, ValueError):
            pass

    for target in upstreams:
        threading.Thread(target=attempt, args=(target,), daemon=True).start()
    return reached.wait(0.8)


mode, where, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
ok = haproxy(where, set(targets)) if mode == "haproxy" else connect(where, targets)
sys.exit(0 if ok else 1)
'''
NGINX_PID_FILE = "/run/nginx.pid"  # Debian's build: --pid-path=/run/nginx.pid (`nginx -V`)


def track_backends(spec: Spec) -> list[str]:
    """The HAProxy backends the track script asks about, named as `render.haproxy` names
    them: `rke2ha_<port>` per TCP port; at layer 7, 80 and 443 share the one HTTP backend
    (`rke2ha_ingress`) and have none of their own."""
    lb = spec.load_balancer
    names: list[str] = []
    for port in lb.ports:
        name = INGRESS_BACKEND if lb.layer == 7 and port in (80, 443) else f"rke2ha_{port}"
        if name not in names:
            names.append(name)
    return names


def track_upstreams(spec: Spec) -> list[str]:
    """`host:port` of every node port the engine forwards to (nginx's track rule): the
    port behind each load balancer port (`healthplan.port_health`: at layer 7, 80 and 443
    both go to the ingress's port 80)."""
    ports = list(dict.fromkeys(port_health(spec, p).backend_port for p in spec.load_balancer.ports))
    return [
        host_port(node_address(node, f"nodes[{i}]"), port)
        for port in ports
        for i, node in enumerate(spec.nodes)
    ]


def track_command(spec: Spec) -> str:
    """The track script's command line for the spec's engine.

    HAProxy: its runtime API. Open-source nginx has neither a runtime API nor active health
    checks: the stream upstream module only counts failed connections (`max_fails`,
    `fail_timeout`: nginx.org/en/docs/stream/ngx_stream_upstream_module.html), and
    `health_check` comes from ngx_stream_upstream_hc_module, which only the commercial
    subscription has (nginx.org/en/docs/stream/ngx_stream_upstream_hc_module.html);
    `stub_status` reports connection counts, not upstreams
    (nginx.org/en/docs/http/ngx_http_stub_status_module.html).
    So for nginx the script asks what nginx itself would find: its master runs and an
    upstream accepts a connection from this host.
    """
    lb = spec.load_balancer
    if lb.engine == "nginx":
        upstreams = track_upstreams(spec)
        return (
            f"/usr/bin/python3 {TRACK_SCRIPT_PATH} connect {NGINX_PID_FILE} {' '.join(upstreams)}"
        )
    socket_path = DEFAULT_LAYOUT.haproxy_socket
    backends = " ".join(track_backends(spec))
    return f"/usr/bin/python3 {TRACK_SCRIPT_PATH} haproxy {socket_path} {backends}"


def render_host_keepalived(spec: Spec, spec_label: str, index: int, secret: str) -> str:
    """keepalived.conf for `load_balancer.hosts[index]` of a two-host load balancer.

    Source for the keywords: keepalived.conf(5) (acassen/keepalived,
    doc/man/man5/keepalived.conf.5.in; Debian bookworm's keepalived 2.2.7): `nopreempt`
    works only when the initial state is not MASTER; `auth_pass` uses its first eight
    characters, and authentication "can be helpful" with unicast; a tracked script with no
    weight moves the instance to FAULT after `fall` failures.

    Both hosts start as BACKUP with `nopreempt`: the higher priority wins when both come up
    together, and a host that comes back (its HAProxy healthy again) does not take the
    address back from a peer serving fine. The adverts are unicast to the peer's address
    (clouds and many switches drop multicast) and carry the VRRP password (`secret`).
    """
    lb = spec.load_balancer
    vrrp = lb.vrrp
    if vrrp is None or len(lb.hosts) != 2 or not lb.address:
        raise InvalidError("keepalived on load_balancer.hosts needs two hosts and vrrp")
    me, peer = lb.hosts[index], lb.hosts[1 - index]
    instance = f"rke2ha_{spec.name}".replace("-", "_")
    notes = header_lines(
        spec_label, f"keepalived on load balancer host {me.name} (virtual IP {lb.address})"
    )
    lines = [*commented(notes), ""]
    lines += _block("global_defs", [f"router_id {instance}_{me.name}".replace("-", "_"),
                                    "enable_script_security", "script_user root"])  # fmt: skip
    lines.append("")
    lines += _block(
        f"vrrp_script {HOST_SCRIPT}",
        [
            f'script "{track_command(spec)}"',
            f"interval {HOST_SCRIPT_INTERVAL}",
            f"timeout {HOST_SCRIPT_TIMEOUT}",
            f"fall {HOST_SCRIPT_FALL}",
            f"rise {HOST_SCRIPT_RISE}",
        ],
    )
    lines.append("")
    body = [
        "state BACKUP",
        "nopreempt",
        f"interface {vrrp.interface}",
        f"virtual_router_id {vrrp.virtual_router_id}",
        f"priority {HOST_PRIORITY[index]}",
        "advert_int 1",
        f"unicast_src_ip {me.address}",
        *_block("unicast_peer", [peer.address]),
        # keepalived sends (and checks) at most 8 characters of a PASS password.
        *_block("authentication", ["auth_type PASS", f"auth_pass {secret[:8]}"]),
        *_block("virtual_ipaddress", [f"{lb.address} dev {vrrp.interface}"]),
        *_block("track_script", [HOST_SCRIPT]),
    ]
    lines += _block(f"vrrp_instance {instance}", body)
    return "\n".join(lines) + "\n"
