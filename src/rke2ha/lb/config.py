"""The load balancer's configuration: one object, built from the spec or from ad-hoc flags.

Every part of the load balancer (frontends, pools, checks, admin, reload, workers) reads
`LbConfig`; nothing re-reads the YAML. Each frontend names its kind: `tcp` relays bytes
(layer 4), `https` ends TLS and proxies HTTP, `redirect` answers plain HTTP with a redirect
to https (layer 7); the layer 7 settings shared by those two are `LbConfig.l7`. Defaults
are the spec model's (`spec.LoadBalancer`, `spec.Health`), stated there once.

The spec path goes through `rke2ha.healthplan`, so the RKE2 and
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
from pathlib import Path
from typing import Literal

from rke2ha.addresses import is_ip
from rke2ha.errors import UsageError
from rke2ha.healthplan import HttpProbe, port_health
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Health, LoadBalancer, Spec

Balance = Literal["leastconn", "roundrobin"]
Kind = Literal["tcp", "https", "redirect"]
HostPort = tuple[str, int]

# Every default of the load balancer, from the spec model (the flags' defaults too).
SPEC_DEFAULTS = LoadBalancer()
HEALTH_DEFAULTS = Health()
DEFAULT_ADMIN: HostPort | None = SPEC_DEFAULTS.admin_listen()
# Layer 7 deadlines the spec does not expose: a request head must arrive within
# HEADER_TIMEOUT (else 408); an idle keep-alive client is closed after KEEPALIVE_TIMEOUT.
HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 60.0


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
    interval: float = HEALTH_DEFAULTS.interval
    timeout: float = HEALTH_DEFAULTS.timeout
    rise: int = HEALTH_DEFAULTS.rise
    fall: int = HEALTH_DEFAULTS.fall
    jitter: float = HEALTH_DEFAULTS.jitter
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
    balance: Balance = SPEC_DEFAULTS.balance
    connect_timeout: float = SPEC_DEFAULTS.connect_timeout
    # Layer 4: a connection silent both ways this long is closed. Layer 7: the read/write
    # and websocket idle deadline (`http_timeout`).
    idle_timeout: float = SPEC_DEFAULTS.idle_timeout
    max_connections: int = SPEC_DEFAULTS.max_connections
    retries: int = SPEC_DEFAULTS.retries
    send_proxy: bool = False
    kind: Kind = "tcp"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class L7Settings:
    """What the layer 7 frontends (`https`, `redirect`) of one load balancer share."""

    hostname: str  # the certificate covers it; redirects go to it
    cert: Path
    key: Path
    redirect_code: Literal[301, 308] = SPEC_DEFAULTS.redirect_code
    acme_passthrough: bool = False
    affinity: bool = False
    # Where the cookie's HMAC key lives (made once, 0600), or the key itself: `workers.py`
    # fills it in before starting workers, so a cookie pins the same node in each of them.
    affinity_secret_file: Path | None = None
    affinity_secret: bytes | None = field(default=None, repr=False)
    header_timeout: float = HEADER_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    # The HTTPS port clients reach (443, or 443 + offset in an unprivileged lab): port 80's
    # redirect and X-Forwarded-Port (Rancher's own links) name it.
    forwarded_port: int = 443


ADMIN_FLAG = "--admin HOST:PORT (or --admin off)"


@dataclass(frozen=True)
class LbConfig:
    frontends: tuple[FrontendConfig, ...]
    admin: HostPort | None = DEFAULT_ADMIN
    # What sets `admin`, for the advice when it cannot be served: the flag or the spec field.
    admin_from: str = ADMIN_FLAG
    drain_timeout: float = SPEC_DEFAULTS.drain_timeout
    workers: int = 1
    l7: L7Settings | None = None  # set when a frontend is of kind https or redirect
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


# Ports a layer 7 spec serves itself: 443 ends TLS, 80 redirects. Its other ports (6443,
# 9345) carry TLS the nodes end, so they are relayed at layer 4 even at `layer: 7`.
HTTPS_PORT, HTTP_PORT = 443, 80


def _spec_kind(layer: int, port: int) -> Kind:
    if layer == 7 and port == HTTPS_PORT:
        return "https"
    if layer == 7 and port == HTTP_PORT:
        return "redirect"
    return "tcp"


def _l7_from_spec(spec: Spec, port_offset: int) -> L7Settings:
    lb = spec.load_balancer
    if lb.tls is None:
        raise UsageError(
            "load_balancer.tls is not set; layer 7 needs {cert: FILE, key: FILE} "
            f"for {spec.hostname}"
        )
    return L7Settings(
        hostname=spec.hostname,
        cert=spec.resolve(lb.tls.cert),
        key=spec.resolve(lb.tls.key),
        redirect_code=lb.redirect_code,
        acme_passthrough=lb.acme_passthrough,
        affinity=lb.affinity == "cookie",
        affinity_secret_file=spec.state_dir / "secrets" / f"{spec.name}-lb-affinity",
        forwarded_port=HTTPS_PORT + port_offset,
    )


def from_spec(spec: Spec, *, port_offset: int = 0, workers: int = 1) -> LbConfig:
    """Frontends for every `load_balancer.ports` entry, each to that port on every node.

    At `layer: 7`, 443 (always served) ends TLS and proxies HTTP to the nodes' port 80, and
    80 redirects to it; the health rule of each port is the healthplan's.
    """
    lb = spec.load_balancer
    if not lb.address:
        raise UsageError("load_balancer.address is not set; the frontends need an address")
    missing = [n.name for n in spec.nodes if not n.address]
    if missing:
        raise UsageError(f"nodes without an address: {', '.join(missing)}; set nodes[].address")
    l7 = _l7_from_spec(spec, port_offset) if lb.layer == 7 else None
    ports = sorted(set(lb.ports) | {HTTPS_PORT}) if l7 is not None else list(lb.ports)
    for port in ports:
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
    for port in ports:
        kind = _spec_kind(lb.layer, port)
        # Layer 7's redirect and HTTPS frontends check the ingress as 443 does.
        rule = port_health(spec, HTTPS_PORT if kind != "tcp" else port)
        probes = tuple(_probe_from_plan(p, port_offset, token) for p in rule.probes)
        backends = tuple(
            BackendConfig(str(n.address), rule.backend_port + port_offset, n.name)
            for n in spec.nodes
        )
        if kind == "redirect" and not lb.acme_passthrough:
            # The redirect answers itself: it has nodes (and checks them) only when ACME
            # challenges pass through to them; unused nodes would only mislead /status.
            backends = ()
        frontends.append(
            FrontendConfig(
                name=f"port-{port}" if kind == "tcp" else f"{kind}-{port + port_offset}",
                host=lb.address,
                port=port + port_offset,
                backends=backends,
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
                idle_timeout=lb.idle_timeout if kind == "tcp" else lb.http_timeout,
                max_connections=lb.max_connections,
                retries=lb.retries,
                # only where the plan says (the ingress at layer 4); never to 6443/9345
                send_proxy=rule.send_proxy and kind == "tcp",
                kind=kind,
            )
        )
    return LbConfig(
        frontends=tuple(frontends),
        admin=_admin_from_spec(lb, port_offset),
        admin_from="load_balancer.admin in the spec (the port offset is added to it)",
        drain_timeout=lb.drain_timeout,
        workers=workers,
        l7=l7,
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
    if int(port_text) == 0 and what != "--backend":
        # `dns serve --listen HOST:0` takes any free port for tests; a load balancer's port
        # is what clients, the DNS record and the nodes' checks are told, and with
        # --workers each process would get another one.
        raise UsageError(
            f"{what} {text!r}: port 0 (any free port) is not offered here, since clients "
            "must know the port; give one 1-65535, e.g. 127.0.0.1:8443"
        )
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


@dataclass(frozen=True)
class L7Flags:
    """The ad hoc layer 7 flags (`--layer 7 --cert --key --hostname ...`)."""

    cert: Path | None = None
    key: Path | None = None
    hostname: str | None = None
    redirect_from: str | None = None
    redirect_code: Literal[301, 308] = SPEC_DEFAULTS.redirect_code
    acme_passthrough: bool = False
    affinity: bool = False
    http_timeout: float = SPEC_DEFAULTS.http_timeout
    header_timeout: float = HEADER_TIMEOUT


def _l7_from_flags(l7: L7Flags, listen: HostPort) -> L7Settings:
    assert l7.cert is not None and l7.key is not None and l7.hostname is not None
    return L7Settings(
        hostname=l7.hostname,
        cert=l7.cert,
        key=l7.key,
        redirect_code=l7.redirect_code,
        acme_passthrough=l7.acme_passthrough,
        affinity=l7.affinity,
        header_timeout=l7.header_timeout,
        forwarded_port=listen[1],
    )


def from_flags(
    *,
    listen: str,
    backends: list[str],
    health: str = "tcp",
    host_header: str | None = None,
    balance: Balance = SPEC_DEFAULTS.balance,
    admin: str | None = SPEC_DEFAULTS.admin,
    workers: int = 1,
    interval: float = HEALTH_DEFAULTS.interval,
    timeout: float = HEALTH_DEFAULTS.timeout,
    rise: int = HEALTH_DEFAULTS.rise,
    fall: int = HEALTH_DEFAULTS.fall,
    connect_timeout: float = SPEC_DEFAULTS.connect_timeout,
    idle_timeout: float = SPEC_DEFAULTS.idle_timeout,
    drain_timeout: float = SPEC_DEFAULTS.drain_timeout,
    max_connections: int = SPEC_DEFAULTS.max_connections,
    retries: int = SPEC_DEFAULTS.retries,
    send_proxy: bool = False,
    access_log: str | None = "-",
    relay: Literal["auto", "splice", "copy"] = "auto",
    l7: L7Flags | None = None,
) -> LbConfig:
    """One frontend from `--listen` to every `--backend` (with `l7`: it ends TLS, and
    `--redirect-from` adds a plain HTTP frontend redirecting to it)."""
    if l7 is not None:
        given = (("--cert", l7.cert), ("--key", l7.key), ("--hostname", l7.hostname))
        missing = [flag for flag, value in (*given, ("--backend", backends)) if not value]
        if missing:
            raise UsageError(f"--layer 7 needs {', '.join(missing)}")
    if not backends:
        raise UsageError("give at least one --backend HOST:PORT")
    host, port = parse_hostport(listen, "--listen")
    settings = _l7_from_flags(l7, (host, port)) if l7 is not None else None
    if settings is not None and send_proxy:
        raise UsageError(
            "--send-proxy is for layer 4; at layer 7 the nodes learn the client's address "
            "from X-Forwarded-For"
        )
    redirect_from = None
    if l7 is not None and l7.redirect_from:
        redirect_from = parse_hostport(l7.redirect_from, "--redirect-from")
        if same_listener((host, port), redirect_from):
            # SO_REUSEPORT would let both bind and split the port's clients between them.
            raise UsageError(
                f"--redirect-from {l7.redirect_from} uses the port of --listen {listen}; "
                "give the plain HTTP port, e.g. 80"
            )
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
        if redirect_from is not None:
            check_not_itself(redirect_from, (backend.host, backend.port), "--backend")
    frontend = FrontendConfig(
        name=f"listen-{port}" if settings is None else f"https-{port}",
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
        idle_timeout=idle_timeout if l7 is None else l7.http_timeout,
        max_connections=max_connections,
        retries=retries,
        send_proxy=send_proxy,
        kind="tcp" if settings is None else "https",
    )
    frontends = [frontend]
    if redirect_from is not None and l7 is not None:
        frontends.append(
            replace(
                frontend,
                name=f"redirect-{redirect_from[1]}",
                host=redirect_from[0],
                port=redirect_from[1],
                # the redirect answers itself; nodes only for ACME challenges
                backends=backend_cfgs if l7.acme_passthrough else (),
                kind="redirect",
            )
        )
    return LbConfig(
        frontends=tuple(frontends),
        admin=parse_hostport(admin, "--admin") if admin else None,
        drain_timeout=drain_timeout,
        workers=workers,
        access_log=access_log,
        relay=relay,
        l7=settings,
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
