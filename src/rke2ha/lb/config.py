"""The load balancer's configuration: one object, built from the spec or from ad-hoc flags.

Every part of the load balancer (frontends, pools, checks, admin, reload) reads `LbConfig`;
nothing re-reads the YAML. The spec path goes through `rke2ha.healthplan`, so the RKE2 and
Rancher rules (ingress health from the catch-all server for 80/443, `/readyz` with its 401
semantics for 6443, supervisor `/ping` *and* `/readyz` for 9345) are decided there once.

`port_offset` adds N to every frontend, backend and probe port: the lab runs as a normal
user on loopback, where ports below 1024 cannot be bound.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from rke2ha.addresses import is_ip
from rke2ha.errors import UsageError
from rke2ha.healthplan import HttpProbe, port_health
from rke2ha.secretfiles import read_secret
from rke2ha.spec import LoadBalancer, Spec

Balance = Literal["leastconn", "roundrobin"]


@dataclass(frozen=True)
class Probe:
    """One active check request; `kind` tcp only connects. All probes of a backend must pass."""

    kind: Literal["tcp", "http", "https"]
    port: int | None = None  # None: the backend's own port
    path: str = "/"
    host_header: str | None = None
    ok_statuses: tuple[int, ...] = (200,)
    expect_body: str | None = None
    send_proxy: bool = False  # a PROXY v2 header first, as the traffic to this node gets
    # The bearer token itself, read once from its 0600 file; never printed (repr=False).
    token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.kind == "tcp":
            return "tcp connect"
        where = f"@{self.port}" if self.port is not None else ""
        statuses = "|".join(str(s) for s in self.ok_statuses)
        body = f" body={self.expect_body!r}" if self.expect_body else ""
        host = f" Host={self.host_header}" if self.host_header else ""
        auth = " with bearer token" if self.token else ""
        proxy = " after PROXY v2" if self.send_proxy else ""
        return f"{self.kind} GET {self.path}{where}{host}{proxy} expect {statuses}{body}{auth}"


@dataclass(frozen=True)
class HealthConfig:
    interval: float = 1.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 2
    jitter: float = 0.1
    probes: tuple[Probe, ...] = (Probe("tcp"),)
    why: str = "TCP connect"


@dataclass(frozen=True)
class BackendConfig:
    host: str
    port: int
    name: str = ""

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return self.name or self.key


@dataclass(frozen=True)
class FrontendConfig:
    name: str
    host: str
    port: int
    backends: tuple[BackendConfig, ...]
    health: HealthConfig = field(default_factory=HealthConfig)
    balance: Balance = "leastconn"
    connect_timeout: float = 5.0
    idle_timeout: float = 3600.0
    max_connections: int = 10_000
    retries: int = 2
    send_proxy: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


ADMIN_FLAG = "--admin HOST:PORT (or --admin off)"


@dataclass(frozen=True)
class LbConfig:
    frontends: tuple[FrontendConfig, ...]
    admin: tuple[str, int] | None = ("127.0.0.1", 8404)
    # What sets `admin`, for the advice when it cannot be served: the flag or the spec field.
    admin_from: str = ADMIN_FLAG
    drain_timeout: float = 30.0
    workers: int = 1
    access_log: str | None = "-"  # "-" stdout, a path, or None for off
    relay: Literal["auto", "splice", "copy"] = "auto"
    # Pipes kept for zero-copy relaying; each is held only while bytes move through it.
    pipe_pool: int = 256


# ---- from the spec ---------------------------------------------------------------------


def _probe_from_plan(probe: HttpProbe, offset: int, token: str | None) -> Probe:
    return Probe(
        kind=probe.scheme,
        port=probe.port + offset,
        path=probe.path,
        host_header=probe.host_header,
        ok_statuses=probe.ok_statuses,
        expect_body=probe.expect_body,
        send_proxy=probe.send_proxy,
        token=token if probe.bearer_token_file is not None else None,
    )


def _check_offset(port: int, offset: int) -> None:
    if port + offset > 65535:
        raise UsageError(
            f"--port-offset {offset} moves port {port} to {port + offset}, past 65535; "
            f"use an offset of at most {65535 - port}"
        )


def _admin_from_spec(lb: LoadBalancer, port_offset: int) -> tuple[str, int] | None:
    """`load_balancer.admin` moved by the offset like every other port, checked as --admin is."""
    listen = lb.admin_listen(port_offset)
    if listen is None:
        return None
    return parse_hostport(f"[{listen[0]}]:{listen[1]}", "load_balancer.admin")


def from_spec(spec: Spec, *, port_offset: int = 0, workers: int = 1) -> LbConfig:
    """Frontends for every `load_balancer.ports` entry, each to that port on every node."""
    lb = spec.load_balancer
    if lb.layer != 4:
        raise UsageError(
            "load_balancer.layer is 7 but --layer 4 was given; drop --layer 4 to serve the "
            "spec at layer 7"
        )
    if not lb.address:
        raise UsageError("load_balancer.address is not set; the frontends need an address")
    missing = [n.name for n in spec.nodes if not n.address]
    if missing:
        raise UsageError(f"nodes without an address: {', '.join(missing)}; set nodes[].address")
    for port in lb.ports:
        _check_offset(max(port, port_health(spec, port).backend_port), port_offset)
    for node in spec.nodes:
        if _address_of(str(node.address)) == _address_of(str(lb.address)):
            # Every port would forward to its own listener (rule lb.on_node says why).
            raise UsageError(
                f"node {node.name} has the load balancer's address {lb.address}; the load "
                "balancer would connect to itself. Give the load balancer its own address"
            )
    token_file = spec.health_token_file
    token = read_secret(token_file, what="health token") if token_file is not None else None
    health = lb.health
    frontends = []
    for port in lb.ports:
        rule = port_health(spec, port)
        probes = tuple(_probe_from_plan(p, port_offset, token) for p in rule.probes)
        frontends.append(
            FrontendConfig(
                name=f"port-{port}",
                host=lb.address,
                port=port + port_offset,
                backends=tuple(
                    BackendConfig(str(n.address), rule.backend_port + port_offset, n.name)
                    for n in spec.nodes
                ),
                health=HealthConfig(
                    interval=health.interval,
                    timeout=health.timeout,
                    rise=health.rise,
                    fall=health.fall,
                    jitter=health.jitter,
                    probes=probes or (Probe("tcp"),),
                    why=rule.why,
                ),
                balance=lb.balance,
                connect_timeout=lb.connect_timeout,
                idle_timeout=lb.idle_timeout,
                max_connections=lb.max_connections,
                retries=lb.retries,
                # only where the plan says (the ingress); never to 6443/9345
                send_proxy=rule.send_proxy,
            )
        )
    return LbConfig(
        frontends=tuple(frontends),
        admin=_admin_from_spec(lb, port_offset),
        admin_from="load_balancer.admin in the spec (the port offset is added to it)",
        drain_timeout=lb.drain_timeout,
        workers=workers,
    )


# ---- from ad-hoc flags ------------------------------------------------------------------


# RFC 1123 host names: letters, digits and inner hyphens in dot-separated labels.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _host_problem(host: str) -> str | None:
    """Why `host` is neither an IP address nor a host name (None when it is one)."""
    if is_ip(host):
        return None
    if "://" in host:
        return "a URL; give the address only, without the scheme"
    if "," in host:
        return "a list; give one address per flag"
    if re.fullmatch(r"[0-9.]+", host):
        return "not a valid IPv4 address"  # e.g. 127.0.96 (inet_aton would read 127.0.0.96)
    if not _HOST_NAME.fullmatch(host):
        return "not an IP address or a host name"
    return None


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); UsageError naming `what` otherwise."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.lstrip("-").isdigit():
        raise UsageError(f"{what} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8443")
    if not 0 < int(port_text) < 65536:
        raise UsageError(f"{what} {text!r}: the port must be 1-65535, e.g. 127.0.0.1:8443")
    problem = _host_problem(host)
    if problem is not None:
        raise UsageError(f"{what} {text!r}: {host!r} is {problem}; e.g. 127.0.0.1:8443")
    return host, int(port_text)


def _address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` as an address (`localhost` is loopback); None for other names."""
    if host == "localhost":
        return ipaddress.ip_address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def same_listener(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """True when a connection to `b` would reach a socket listening on `a` (or two
    listeners on `a` and `b` would share connections): same port, and the same address, a
    wildcard `a` in front of a loopback `b`, or a wildcard on either side of two listeners.
    Addresses are compared as addresses, not text (`::1` is `0:0:0:0:0:0:0:1`)."""
    if a[1] != b[1]:
        return False
    first, second = _address_of(a[0]), _address_of(b[0])
    if first is None or second is None:
        return a[0] == b[0]
    if first == second:
        return True
    if first.is_unspecified:
        return second.is_loopback or second.is_unspecified
    return second.is_unspecified and first.is_loopback


def check_not_itself(listen: tuple[str, int], target: tuple[str, int], what: str) -> None:
    """UsageError when `target` (a backend) is the listening address itself: every
    connection, health checks first, would loop through the load balancer until it runs
    out of descriptors."""
    if same_listener(listen, target):
        raise UsageError(
            f"{what} {target[0]}:{target[1]} is the load balancer's own listening address; "
            "it would connect to itself. Give the nodes' addresses"
        )


def parse_health(text: str, host_header: str | None) -> Probe:
    """`tcp`, `http:PATH[@PORT]` or `https:PATH[@PORT]` -> Probe (UsageError otherwise)."""
    if text == "tcp":
        return Probe("tcp")
    kind, sep, rest = text.partition(":")
    if kind not in ("http", "https") or not sep or not rest.startswith("/"):
        raise UsageError(
            f"--health {text!r}: expected tcp, http:PATH[@PORT] or https:PATH[@PORT] "
            "(e.g. http:/healthz@80)"
        )
    path, at, port_text = rest.partition("@")
    port: int | None = None
    if at:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"--health {text!r}: the port after @ must be 1-65535")
        port = int(port_text)
    scheme: Literal["http", "https"] = "https" if kind == "https" else "http"
    return Probe(scheme, port=port, path=path, host_header=host_header)


def from_flags(
    *,
    listen: str,
    backends: list[str],
    health: str = "tcp",
    host_header: str | None = None,
    balance: Balance = "leastconn",
    admin: str | None = "127.0.0.1:8404",
    workers: int = 1,
    interval: float = 1.0,
    timeout: float = 1.0,
    rise: int = 2,
    fall: int = 2,
    connect_timeout: float = 5.0,
    idle_timeout: float = 3600.0,
    drain_timeout: float = 30.0,
    max_connections: int = 10_000,
    retries: int = 2,
    send_proxy: bool = False,
    access_log: str | None = "-",
    relay: Literal["auto", "splice", "copy"] = "auto",
) -> LbConfig:
    """One frontend from `--listen` to every `--backend`."""
    if not backends:
        raise UsageError("give at least one --backend HOST:PORT")
    host, port = parse_hostport(listen, "--listen")
    probe = parse_health(health, host_header)
    if send_proxy and probe.port is None:
        # A check on the traffic's own port speaks PROXY too (the backend expects it); one
        # on another port (@PORT) does not, as HAProxy does for checks with a `port`.
        probe = replace(probe, send_proxy=True)
    backend_cfgs = tuple(
        BackendConfig(*parse_hostport(b, "--backend")) for b in dict.fromkeys(backends)
    )
    for backend in backend_cfgs:
        check_not_itself((host, port), (backend.host, backend.port), "--backend")
    frontend = FrontendConfig(
        name=f"listen-{port}",
        host=host,
        port=port,
        backends=backend_cfgs,
        health=HealthConfig(
            interval=interval,
            timeout=timeout,
            rise=rise,
            fall=fall,
            probes=(probe,),
            why=probe.describe(),
        ),
        balance=balance,
        connect_timeout=connect_timeout,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        retries=retries,
        send_proxy=send_proxy,
    )
    return LbConfig(
        frontends=(frontend,),
        admin=parse_hostport(admin, "--admin") if admin else None,
        drain_timeout=drain_timeout,
        workers=workers,
        access_log=access_log,
        relay=relay,
    )


def check_privileges(config: LbConfig) -> None:
    """UsageError when a port below 1024 needs root and we are not root."""
    if os.geteuid() == 0:
        return
    low = sorted({f.port for f in config.frontends if f.port < 1024})
    if low:
        raise UsageError(
            f"ports {', '.join(map(str, low))} are below 1024 and need root; run as root "
            "or pass --port-offset N (e.g. 10000) to move every frontend and backend port"
        )
