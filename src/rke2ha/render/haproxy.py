"""`haproxy/haproxy.cfg`: HAProxy in front of the RKE2 servers, layer 4 or layer 7.

Health checks are translated from `rke2ha.healthplan` (the one definition of "healthy"),
never re-derived here: each probe of a port's plan becomes an `http-check connect` /
`send` / `expect` sequence, so a port whose plan has two probes (9345: supervisor `/ping`
*and* apiserver `/readyz`) only passes when both do. TLS probes complete the handshake
(`ssl ... verify none`): the nodes' certificates are signed by the cluster's own CA, and a
bare TCP check on a TLS port only fills the node logs with handshake errors.

The bearer token for the 6443 check is never written into haproxy.cfg (a 0644 file that
ends up in tickets and backups). The config reads it from the environment variable
`RKE2HA_HEALTH_TOKEN`, which `health-token.env` (mode 0600) sets through the systemd
drop-in `rke2ha-health-token.conf`; without it the config refuses to load (`.alert`), so a
missing token is a startup error, not every apiserver silently marked down.
"""

from __future__ import annotations

from rke2ha.healthplan import HttpProbe, PortHealth, port_health
from rke2ha.render.common import (
    DEFAULT_LAYOUT,
    Layout,
    commented,
    header_lines,
    host_port,
    node_address,
    seconds,
)
from rke2ha.render.haproxy_fds import PER_CONNECTION, PER_THREAD, RESERVED, FdNeed, fd_need
from rke2ha.spec import Spec

TOKEN_ENV = "RKE2HA_HEALTH_TOKEN"
# Rancher's layer-7 guide: connect 30 s, read/write `http_timeout` (1800 s).
L7_CONNECT_TIMEOUT = 30.0
HTTP_REQUEST_TIMEOUT = 30.0
INGRESS_BACKEND = "rke2ha_ingress"
ACME_PREFIX = "/.well-known/acme-challenge/"


def _needs_token(spec: Spec) -> bool:
    return any(
        probe.bearer_token_file is not None
        for port in spec.load_balancer.ports
        for probe in port_health(spec, port).probes
    )


def _probe_lines(probe: HttpProbe) -> list[str]:
    connect = f"http-check connect port {probe.port}"
    if probe.send_proxy:
        # An explicit `connect` with a port sends no PROXY header unless it says so (nor does
        # `check-send-proxy` reach it), and an ingress expecting the header refuses the check.
        connect += " send-proxy"
    if probe.scheme == "https":
        # `verify none` on default-server: the nodes present the cluster CA's certificates.
        connect += " ssl"
    if probe.host_header:
        send = (
            f"http-check send meth GET uri {probe.path} ver HTTP/1.1 hdr Host {probe.host_header}"
        )
    else:
        # HTTP/1.0 needs no Host header; the apiserver rejects HTTP/1.1 without one.
        send = f"http-check send meth GET uri {probe.path} ver HTTP/1.0"
    if probe.bearer_token_file is not None:
        send += f' hdr Authorization "Bearer ${{{TOKEN_ENV}}}"'
    if len(probe.ok_statuses) == 1:
        expect = f"http-check expect status {probe.ok_statuses[0]}"
    else:
        codes = "|".join(str(code) for code in probe.ok_statuses)
        expect = f"http-check expect rstatus ^({codes})$"
    lines = [connect, send, expect]
    if probe.expect_body is not None:
        lines.append(f"http-check expect rstring ^[[:space:]]*{probe.expect_body}[[:space:]]*$")
    return lines


def _check_lines(health: PortHealth) -> list[str]:
    lines = [f"# health: {health.why}"]
    if not health.probes:
        return [*lines, "option tcp-check"]
    lines.append("option httpchk")
    for probe in health.probes:
        lines += _probe_lines(probe)
    return lines


def _servers(spec: Spec, port: int, *, proxy_protocol: bool, cookie: bool) -> list[str]:
    lines = []
    for index, node in enumerate(spec.nodes):
        address = node_address(node, f"nodes[{index}]")
        line = f"server {node.name} {host_port(address, port)} check"
        if proxy_protocol:
            line += " send-proxy-v2"
        if cookie:
            line += f" cookie {node.name}"
        lines.append(line)
    return lines


def _section(title: str, body: list[str]) -> list[str]:
    return [title, *(f"    {line}" for line in body), ""]


def _bind(layout: Layout, port: int) -> str:
    return f"bind {layout.bind_host}:{port}" if layout.bind_host else f"bind :{port}"


def _admin_address(spec: Spec) -> str:
    """`load_balancer.admin`: the schema admits only a loopback HOST:PORT or empty (off),
    so the stats page, which shows every node's state, never leaves the host."""
    return spec.load_balancer.admin


def _tcp_port(spec: Spec, layout: Layout, port: int) -> list[str]:
    lb = spec.load_balancer
    health = port_health(spec, port)
    name = f"rke2ha_{port}"
    front = [_bind(layout, port), "mode tcp", "option tcplog", f"default_backend {name}"]
    # PROXY protocol only where the ingress can be told to expect it; the apiserver and
    # the supervisor cannot.
    proxy = health.send_proxy
    back = [
        "mode tcp",
        f"balance {lb.balance}",
        *_check_lines(health),
        *_servers(spec, health.backend_port, proxy_protocol=proxy, cookie=False),
    ]
    return _section(f"frontend {name}", front) + _section(f"backend {name}", back)


def _l7_http(spec: Spec, layout: Layout) -> list[str]:
    lb = spec.load_balancer
    body = [
        _bind(layout, 80),
        "mode http",
        "option httplog",
        f"timeout http-request {seconds(HTTP_REQUEST_TIMEOUT)}",
    ]
    if lb.acme_passthrough:
        body += [
            f"acl acme_challenge path_beg {ACME_PREFIX}",
            f"use_backend {INGRESS_BACKEND} if acme_challenge",
        ]
    redirect = f"http-request redirect prefix https://{spec.hostname} code {lb.redirect_code}"
    body.append(redirect + (" unless acme_challenge" if lb.acme_passthrough else ""))
    return _section("frontend rke2ha_80", body)


def _l7_https(spec: Spec, layout: Layout) -> list[str]:
    lb = spec.load_balancer
    bind = _bind(layout, 443) + f" ssl crt {layout.haproxy_pem(spec.hostname)} alpn h2,http/1.1"
    front = [
        bind,
        "mode http",
        "option httplog",
        "option forwardfor",
        f"timeout client {seconds(lb.http_timeout)}",
        f"timeout http-request {seconds(HTTP_REQUEST_TIMEOUT)}",
        "http-request set-header X-Forwarded-Proto https",
        "http-request set-header X-Forwarded-Port %[dst_port]",
        f"default_backend {INGRESS_BACKEND}",
    ]
    return _section("frontend rke2ha_443", front)


def _l7_backend(spec: Spec) -> list[str]:
    lb = spec.load_balancer
    health = port_health(spec, 443)
    cookie = lb.affinity == "cookie"
    body = [
        "mode http",
        f"balance {lb.balance}",
        f"timeout connect {seconds(L7_CONNECT_TIMEOUT)}",
        f"timeout server {seconds(lb.http_timeout)}",
        "# websockets (Rancher's UI and agents) live on after the upgrade: tunnel timeout",
        f"timeout tunnel {seconds(lb.idle_timeout)}",
    ]
    if cookie:
        body.append("cookie RKE2HA_NODE insert indirect nocache httponly secure")
    body += _check_lines(health)
    body += _servers(spec, health.backend_port, proxy_protocol=False, cookie=cookie)
    return _section(f"backend {INGRESS_BACKEND}", body)


def _token_guard(spec: Spec) -> list[str]:
    if not _needs_token(spec):
        return []
    return [
        "# The 6443 check sends the health token from the environment (never this file).",
        f".if !defined({TOKEN_ENV})",
        f'.alert "{TOKEN_ENV} is not set: install health-token.env and the systemd drop-in '
        'rke2ha-health-token.conf (see their headers)"',
        ".endif",
        "",
    ]


def _global(spec: Spec, layout: Layout) -> list[str]:
    lb = spec.load_balancer
    body = [
        "log /dev/log local0",
        # The runtime API, for `rke2ha lb drain|enable NODE` without a reload. Mode 600:
        # level admin can take every node out; only the owner (root) may talk to it.
        f"stats socket {layout.haproxy_socket} mode 600 level admin",
        "user haproxy",
        "group haproxy",
        f"maxconn {lb.max_connections}",
        # Since 2.6 HAProxy refuses to start when it cannot raise its open-files limit to
        # the need (header); then it starts anyway, warns with the number, and only the
        # connections beyond the limit fail (rke2ha.render.haproxy_fds).
        "no strict-limits",
        f"hard-stop-after {seconds(lb.drain_timeout)}",
        # Spread checks by the spec's jitter so three nodes are not probed in lockstep.
        f"spread-checks {round(lb.health.jitter * 100)}",
    ]
    if lb.layer == 7:
        body.append("ssl-default-bind-options ssl-min-ver TLSv1.2")
    return _section("global", body)


def _defaults(spec: Spec) -> list[str]:
    lb = spec.load_balancer
    health = lb.health
    body = [
        "log global",
        "option dontlognull",
        f"retries {lb.retries}",
        "# a failed connect is retried on another node, not the same dead one",
        "option redispatch",
        f"timeout connect {seconds(lb.connect_timeout)}",
        "# Rancher's websockets and kubectl watches stay open for hours",
        f"timeout client {seconds(lb.idle_timeout)}",
        f"timeout server {seconds(lb.idle_timeout)}",
        f"timeout tunnel {seconds(lb.idle_timeout)}",
        f"timeout check {seconds(health.timeout)}",
        f"default-server inter {seconds(health.interval)} rise {health.rise} "
        f"fall {health.fall} verify none",
    ]
    return _section("defaults", body)


def _stats(spec: Spec) -> list[str]:
    if not _admin_address(spec):
        return []
    body = [
        f"bind {_admin_address(spec)}",
        "mode http",
        "stats enable",
        "stats uri /",
        "stats refresh 5s",
        "no log",
    ]
    return _section("frontend stats", body)


def render_haproxy(spec: Spec, spec_label: str, layout: Layout = DEFAULT_LAYOUT) -> str:
    """The full haproxy.cfg for the spec's layer."""
    lb = spec.load_balancer
    layer7 = lb.layer == 7
    mode = (
        "layer 7: TLS ends here (Rancher tls=external), nodes reached on port 80"
        if layer7
        else "layer 4: TCP passthrough, TLS ends at each node's ingress"
    )
    notes = [
        *header_lines(spec_label, f"HAProxy for {spec.hostname}, {mode}"),
        "Needs HAProxy 2.4 or later (http-check sequences; .if/.alert).",
        "Frontends bind every address, so the standby of a keepalived pair can start too.",
    ]
    if _admin_address(spec):
        notes.append("Stats: http://" + _admin_address(spec) + "/ (loopback only).")
    if layer7:
        notes.append(f"Certificate + key (one PEM, mode 0600): {layout.haproxy_pem(spec.hostname)}")
    if lb.affinity == "cookie" and not layer7:
        notes.append("affinity: cookie needs layer 7; at layer 4 there is no cookie to read.")
    lines = _token_guard(spec)
    lines += _global(spec, layout) + _defaults(spec) + _stats(spec)
    for port in lb.ports:
        if layer7 and port == 80:
            lines += _l7_http(spec, layout)
        elif layer7 and port == 443:
            lines += _l7_https(spec, layout)
        else:
            lines += _tcp_port(spec, layout, port)
    if layer7 and (80 in lb.ports or 443 in lb.ports):
        lines += _l7_backend(spec)
    notes += _fd_notes(fd_need("\n".join(lines)))
    return "\n".join([*commented(notes), "", *lines]).rstrip("\n") + "\n"


def _fd_notes(need: FdNeed) -> list[str]:
    """The open-files need, so the limit is raised before HAProxy refuses to start."""
    one_thread = need.total(1)
    return [
        f"Open files: {one_thread} with one thread, +{PER_THREAD} per further CPU thread "
        f"({PER_CONNECTION} x maxconn {need.maxconn}, {need.listeners} listeners, "
        f"{need.checks} checks, {need.cli} for the stats socket, {RESERVED} reserved).",
        "Where the hard limit is lower HAProxy still starts (no strict-limits) but warns, and "
        "connections beyond the limit fail: raise LimitNOFILE in haproxy.service, or lower "
        "load_balancer.max_connections.",
    ]


def render_token_env(token: str) -> str:
    """`health-token.env` (mode 0600): the bearer token for systemd's EnvironmentFile."""
    if "\n" in token or '"' in token or "\\" in token:
        # systemd EnvironmentFile has its own quoting; a token never needs these.
        raise ValueError("the health token contains a newline, quote or backslash")
    return (
        "# Generated by rke2ha: the 6443 health check's bearer token for HAProxy.\n"
        "# Secret: keep mode 0600, owned by root. Loaded by rke2ha-health-token.conf.\n"
        f'{TOKEN_ENV}="{token}"\n'
    )


def render_systemd_dropin(layout: Layout = DEFAULT_LAYOUT) -> str:
    """The systemd drop-in that loads the token file into haproxy.service's environment."""
    return (
        "# Generated by rke2ha: give HAProxy the 6443 health check's token.\n"
        "# Install as /etc/systemd/system/haproxy.service.d/rke2ha-health-token.conf,\n"
        "# then: systemctl daemon-reload && systemctl reload haproxy\n"
        "[Service]\n"
        f"EnvironmentFile={layout.haproxy_env()}\n"
    )
