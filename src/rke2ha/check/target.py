"""Where each check connects: spec addresses and ports, shifted by the port offset.

Connections go to the addresses in the spec with the Rancher hostname as TLS SNI and HTTP
Host (like `curl --resolve`), so no real DNS is needed to test the path behind it. The
lab uses real ports as root and `port + lab.port_offset` otherwise; the caller passes the
offset. Everything here is plain data derived from the spec; the only I/O is reading the
token file in `load_target`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rke2ha.check import DEFAULT_TIMEOUT
from rke2ha.check.verdicts import START_UNKNOWN, VIEW_UNKNOWN, lb_start, lb_view
from rke2ha.dns.hostport import resolve_host_port
from rke2ha.dns.resolve_check import expectation, server_command
from rke2ha.errors import InvalidError, UsageError
from rke2ha.healthplan import (
    HttpProbe,
    ingress_probe,
    port_health,
    rancher_ping_probe,
    readyz_probe,
    supervisor_probe,
)
from rke2ha.invocation import command, spec_command
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec

DNS_PORT = 53


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class CheckOptions:
    """What the caller adds to the spec: flags of `rke2ha check` or the lab's choices."""

    port_offset: int = 0
    dns_server: str | None = None  # HOST[:PORT]; None: builtin listen address or system
    ca_file: Path | None = None  # trust anchor for tls.certificate; None: system roots
    token_file: Path | None = None  # bearer token: 6443 readiness, Rancher websocket
    timeout: float = DEFAULT_TIMEOUT  # per probe; a frozen peer fails within it


@dataclass(frozen=True)
class NodeTarget:
    name: str
    address: str | None  # None: assigned by the provider and not known yet


@dataclass(frozen=True)
class DnsTarget:
    server: Endpoint | None  # None: the system resolver (from /etc/resolv.conf)
    server_source: str  # where the server came from, for details
    kind: str  # "A", "CNAME" or "ALIAS" (rke2ha.dns.resolve_check.expectation)
    expected: tuple[str, ...]  # A: the load balancer addresses; CNAME/ALIAS: the target
    problem: str | None = None  # why the spec gives nothing to compare with
    # Commands for fixes, with the spec file (they run as printed, `rke2ha.invocation`).
    publish: str = "publish the record"
    start: str = "start the DNS server"
    validate: str = "check the spec"


@dataclass(frozen=True)
class CheckTarget:
    hostname: str
    provider: str
    layer: int
    lb_address: str | None
    lb_ports: tuple[int, ...]
    nodes: tuple[NodeTarget, ...]
    node_ports: tuple[int, ...]  # node (backend) ports behind the load balancer ports
    backend_ports: dict[int, int]  # load balancer port -> node port (443 -> 80 at layer 7)
    port_offset: int
    ingress: HttpProbe  # node port 80: the ingress's own health, catch-all server (no Host)
    readyz: HttpProbe  # 6443 /readyz; statuses already say whether 401 may pass
    supervisor: HttpProbe  # 9345 /ping -> pong
    rancher_ping: HttpProbe  # 443 /ping -> pong with the Rancher hostname (never rotation)
    dns: DnsTarget
    lb_admin: Endpoint | None
    timeout: float
    # Where the engine shows its backends, for fixes (`verdicts.lb_view`): nginx has no page.
    lb_view: str = VIEW_UNKNOWN
    # How to start the load balancer, for fixes (`verdicts.lb_start`).
    lb_start: str = START_UNKNOWN
    ca_file: Path | None = None
    # Bearer token for /readyz (`--token` or the spec's health token); never printed.
    readyz_token: str | None = field(default=None, repr=False)
    # Only an explicit `--token` goes to Rancher: the health token is a Kubernetes one.
    rancher_token: str | None = field(default=None, repr=False)
    spec_file: Path | None = None  # for fixes that name a command: they run as printed

    def command(self, *args: str) -> str:
        """`rke2ha ARGS -f <the spec file>` as it runs from here (`rke2ha.invocation`)."""
        words: list[str | Path] = [*args, "-f", self.spec_file or "FILE"]
        return command(*words)

    @property
    def is_lab(self) -> bool:
        return self.provider == "lab"

    def port(self, port: int) -> int:
        return port + self.port_offset

    def lb(self, port: int) -> Endpoint | None:
        if self.lb_address is None:
            return None
        return Endpoint(self.lb_address, self.port(port))

    def node(self, node: NodeTarget, port: int) -> Endpoint | None:
        if node.address is None:
            return None
        return Endpoint(node.address, self.port(port))


def parse_host_port(text: str, default_port: int, what: str) -> Endpoint:
    """`HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address -> Endpoint (UsageError)."""
    value = text.strip()
    host, port_text = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    if not host:
        raise UsageError(f"{what} {text!r}: no host; write HOST or HOST:PORT")
    if not port_text:
        return Endpoint(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"{what} {text!r}: port {port_text!r} is not 1-65535")
    return Endpoint(host, int(port_text))


def node_ports(spec: Spec) -> tuple[int, ...]:
    """The node ports the load balancer forwards to, in the order of its frontends."""
    ports: list[int] = []
    for frontend in spec.load_balancer.ports:
        backend = port_health(spec, frontend).backend_port
        if backend not in ports:
            ports.append(backend)
    return tuple(ports)


def _dns_target(spec: Spec, options: CheckOptions) -> DnsTarget:
    if options.dns_server:
        server: Endpoint | None = Endpoint(
            *resolve_host_port(options.dns_server, DNS_PORT, "--dns-server")
        )
        source = "--dns-server"
    elif (spec.provider == "lab" or spec.dns.provider == "builtin") and spec.dns.builtin.listen:
        listen = parse_host_port(spec.dns.builtin.listen, DNS_PORT, "dns.builtin.listen")
        host = listen.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        server, source = Endpoint(host, listen.port + options.port_offset), "builtin DNS"
    else:
        server, source = None, "system resolver"
    hints = {
        "publish": _publish(spec),
        "validate": f"`{spec_command(spec, 'validate')}`",
        "start": _start_dns(spec),
    }
    try:
        kind, expected = expectation(spec)
    except InvalidError as err:
        return DnsTarget(server, source, spec.dns.record, (), str(err), **hints)
    return DnsTarget(server, source, kind, tuple(expected), **hints)


def _start_dns(spec: Spec) -> str:
    """Only the lab's and the built-in DNS server are rke2ha's to start."""
    if spec.provider == "lab" or spec.dns.provider == "builtin":
        return f"start the DNS server (`{server_command(spec)}`)"
    return DnsTarget.start


def _publish(spec: Spec) -> str:
    """How this spec's record gets published: the lab and the built-in server serve it
    (`up`, `dns serve`); the other DNS providers take `dns publish`."""
    if spec.provider == "lab":
        return f"publish it with the lab (`{server_command(spec)}`)"
    if spec.dns.provider == "builtin":
        return f"publish it with the built-in server (`{server_command(spec)}`)"
    return f"publish it: `{spec_command(spec, 'dns', 'publish')}`"


def _admin_endpoint(spec: Spec, options: CheckOptions) -> Endpoint | None:
    # The offset moves the admin port too (`LoadBalancer.admin_listen`), as `lb serve` does.
    listen = spec.load_balancer.admin_listen(options.port_offset)
    return None if listen is None else Endpoint(*listen)


def build_target(
    spec: Spec,
    options: CheckOptions,
    readyz_token: str | None = None,
    rancher_token: str | None = None,
) -> CheckTarget:
    """Everything the checks need from the spec, with tokens already read."""
    readyz = readyz_probe(spec)
    if readyz_token is not None and options.token_file is not None:
        # An explicit --token always lets the check see readiness: only 200 passes.
        readyz = replace(readyz, ok_statuses=(200,), bearer_token_file=options.token_file)
    admin = _admin_endpoint(spec, options)
    return CheckTarget(
        hostname=spec.hostname,
        provider=spec.provider,
        layer=spec.load_balancer.layer,
        lb_address=spec.load_balancer.address,
        lb_ports=tuple(spec.load_balancer.ports),
        nodes=tuple(NodeTarget(n.name, n.address) for n in spec.nodes),
        node_ports=node_ports(spec),
        backend_ports={p: port_health(spec, p).backend_port for p in spec.load_balancer.ports},
        port_offset=options.port_offset,
        ingress=ingress_probe(spec),
        readyz=readyz,
        supervisor=supervisor_probe(),
        rancher_ping=rancher_ping_probe(spec),
        dns=_dns_target(spec, options),
        lb_admin=admin,
        timeout=options.timeout,
        lb_view=lb_view(spec.load_balancer.engine, str(admin) if admin else None),
        lb_start=lb_start(
            spec.provider,
            spec.load_balancer.engine,
            up=spec_command(spec, "up"),
            serve=spec_command(spec, "lb", "serve"),
        ),
        ca_file=options.ca_file,
        readyz_token=readyz_token,
        rancher_token=rancher_token,
        spec_file=spec.source_file,
    )


def _check_ca_file(path: Path) -> None:
    """Exit 2 when `--ca` cannot be read (missing, a folder), 1 when it is no PEM bundle:
    the rule for every file argument (README: The spec, "Exit codes everywhere")."""
    from rke2ha.tlsfiles import load_certificate_chain

    if not path.exists():
        raise UsageError(f"--ca {path}: file not found; give a PEM CA bundle")
    try:
        load_certificate_chain(path)
    except UsageError as err:
        raise UsageError(f"--ca {err}; give a PEM CA bundle") from None
    except InvalidError as err:
        raise InvalidError(f"--ca {err}") from None


def load_target(spec: Spec, options: CheckOptions) -> CheckTarget:
    """`build_target` after reading the token files (UsageError/InvalidError if unusable)."""
    if options.ca_file is not None:
        _check_ca_file(options.ca_file)
    rancher_token = None
    if options.token_file is not None:
        rancher_token = read_secret(options.token_file, what="--token")
    readyz_token = rancher_token
    if readyz_token is None and spec.health_token_file is not None:
        readyz_token = read_secret(spec.health_token_file, what="load_balancer.health.token_file")
    return build_target(spec, options, readyz_token, rancher_token)
