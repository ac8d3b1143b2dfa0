"""`nginx/nginx.conf`: nginx in front of the RKE2 servers, layer 4 or layer 7.

Layer 4 is the pure `stream {}` form: every load balancer port is a TCP proxy to the same
port on the nodes. Layer 7 terminates TLS in an `http {}` server for Rancher (Host kept,
X-Forwarded-Proto/Port/For set, websocket Upgrade/Connection passed on, Rancher's 1800 s
read/write timeouts) and keeps 6443/9345 as `stream {}` proxies, since the apiserver and the
supervisor speak their own TLS.

Open-source nginx has no active health checks (that is an NGINX Plus feature): a node is
only taken out after `max_fails` failed connections within `fail_timeout`, so
`rke2ha.healthplan`'s checks (the ingress's own health answer from its catch-all server,
`/readyz`, a node not yet joined on 9345) cannot be expressed. The rendered file says so;
HAProxy or the built-in load balancer are the engines that check real readiness.
With `load_balancer.send_proxy` the stream servers of 80/443 send `proxy_protocol on`;
there is no check that would need the header too (the passive `max_fails` counting only
sees connects).

Debian and Ubuntu build the stream module as a dynamic module: the config includes the
distribution's module snippets (`modules-enabled/*.conf`, or `/usr/share/nginx/modules/` on
RHEL-family systems) instead of `load_module` with a path, which would fail on builds where
the module is static (nginx.org packages).
"""

from __future__ import annotations

import math
from collections.abc import Collection

from rke2ha.render.common import (
    DEFAULT_LAYOUT,
    Layout,
    commented,
    header_lines,
    host_port,
    node_address,
    seconds,
)
from rke2ha.spec import Spec

MODULE_INCLUDES = ("/etc/nginx/modules-enabled/*.conf", "/usr/share/nginx/modules/*.conf")
# Rancher's layer-7 guide: connect 30 s.
L7_CONNECT_TIMEOUT = 30.0
ACME_PREFIX = "/.well-known/acme-challenge/"
INGRESS_UPSTREAM = "rke2ha_ingress"

NO_ACTIVE_CHECKS = [
    "Health: open-source nginx has NO active health checks (an NGINX Plus feature).",
    "A node leaves the pool only after max_fails failed connections in fail_timeout; a node",
    "whose ingress, apiserver (/readyz) or supervisor is up but unhealthy, or a node whose",
    "9345 listens before it has joined, still gets traffic. Use HAProxy or the built-in",
    "load balancer (rke2ha lb serve) where those checks matter.",
]


def _block(title: str, body: list[str]) -> list[str]:
    return [f"{title} {{", *(f"    {line}" if line else "" for line in body), "}"]


def _listen(layout: Layout, port: int, extra: str = "") -> str:
    address = f"{layout.bind_host}:{port}" if layout.bind_host else str(port)
    return f"listen {address}{extra};"


def _fail_timeout(spec: Spec) -> str:
    # nginx parses fail_timeout in whole seconds only ("2400ms" fails `nginx -t`): round up,
    # so a node is never given back sooner than our own detection time.
    health = spec.load_balancer.health
    return f"{math.ceil(max(1.0, health.interval * health.fall + health.timeout))}s"


def _upstream(spec: Spec, name: str, port: int, drained: Collection[str]) -> list[str]:
    lb = spec.load_balancer
    body = ["least_conn;"] if lb.balance == "leastconn" else []
    for index, node in enumerate(spec.nodes):
        address = node_address(node, f"nodes[{index}]")
        # `down` takes the server out of the upstream (ngx_stream_upstream_module and
        # ngx_http_upstream_module, `server` parameter `down`: "marks the server as
        # permanently unavailable"); after a reload only the old workers, which finish
        # their open connections, still use it (nginx.org/en/docs/control.html).
        down = node.name in drained
        if down:
            body.append(f"# {node.name}: drained (`rke2ha lb enable {node.name}` puts it back)")
        body.append(
            f"server {host_port(address, port)} max_fails={lb.health.fall} "
            f"fail_timeout={_fail_timeout(spec)}{' down' if down else ''};"
        )
    return _block(f"upstream {name}", body)


def _stream(spec: Spec, layout: Layout, ports: list[int], drained: Collection[str]) -> list[str]:
    lb = spec.load_balancer
    body: list[str] = []
    for port in ports:
        name = f"rke2ha_{port}"
        body += _upstream(spec, name, port, drained)
        server = [
            _listen(layout, port),
            f"proxy_pass {name};",
            f"proxy_connect_timeout {seconds(lb.connect_timeout)};",
            "# Rancher's websockets and kubectl watches stay open for hours",
            f"proxy_timeout {seconds(lb.idle_timeout)};",
            "proxy_next_upstream on;",
            f"proxy_next_upstream_tries {lb.retries + 1};",
        ]
        if lb.send_proxy and port in (80, 443):
            server.append("proxy_protocol on;")
        body += _block("server", server)
        body.append("")
    return _block("stream", body[:-1])


def _proxy_location(spec: Spec) -> list[str]:
    lb = spec.load_balancer
    return [
        f"proxy_pass http://{INGRESS_UPSTREAM};",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Port $server_port;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "# websockets: pass the upgrade on, or Rancher's UI and agents break",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        f"proxy_connect_timeout {seconds(L7_CONNECT_TIMEOUT)};",
        f"proxy_read_timeout {seconds(lb.http_timeout)};",
        f"proxy_send_timeout {seconds(lb.http_timeout)};",
        "# streamed responses (logs, shells) must not wait in a buffer",
        "proxy_buffering off;",
        "proxy_next_upstream error timeout;",
        f"proxy_next_upstream_tries {lb.retries + 1};",
    ]


def _http(spec: Spec, layout: Layout, drained: Collection[str]) -> list[str]:
    lb = spec.load_balancer
    body = [
        *_block("map $http_upgrade $connection_upgrade", ["default upgrade;", "'' close;"]),
        "",
        *_upstream(spec, INGRESS_UPSTREAM, 80, drained),
        "",
    ]
    redirect = f"return {lb.redirect_code} https://{spec.hostname}$request_uri;"
    plain = [_listen(layout, 80), f"server_name {spec.hostname};"]
    if lb.acme_passthrough:
        plain += _block(f"location {ACME_PREFIX}", _proxy_location(spec))
    plain += _block("location /", [redirect])
    if 80 in lb.ports:
        body += [*_block("server", plain), ""]
    if 443 in lb.ports:
        tls = [
            _listen(layout, 443, " ssl"),
            f"server_name {spec.hostname};",
            f"ssl_certificate {layout.nginx_cert(spec.hostname)};",
            f"ssl_certificate_key {layout.nginx_key(spec.hostname)};",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            *_block("location /", _proxy_location(spec)),
        ]
        body += [*_block("server", tls), ""]
    return _block("http", body[:-1] if body and body[-1] == "" else body)


def render_nginx(
    spec: Spec, spec_label: str, layout: Layout = DEFAULT_LAYOUT, drained: Collection[str] = ()
) -> str:
    """The full nginx.conf for the spec's layer; the `drained` nodes (names) marked `down`."""
    lb = spec.load_balancer
    layer7 = lb.layer == 7
    mode = (
        "layer 7: TLS ends here (Rancher tls=external), nodes reached on port 80"
        if layer7
        else "layer 4: TCP passthrough (stream), TLS ends at each node's ingress"
    )
    notes = [*header_lines(spec_label, f"nginx for {spec.hostname}, {mode}"), "", *NO_ACTIVE_CHECKS]
    if layer7:
        notes += [
            "",
            f"Certificate: {layout.nginx_cert(spec.hostname)}; "
            f"key (mode 0600): {layout.nginx_key(spec.hostname)}",
        ]
    lines = [*commented(notes), ""]
    lines += ["# the stream module is a dynamic module on Debian/Ubuntu and RHEL"]
    lines += [f"include {pattern};" for pattern in MODULE_INCLUDES]
    lines += ["", "worker_processes auto;", ""]
    lines += _block("events", [f"worker_connections {lb.max_connections};"])
    lines.append("")
    if layer7:
        lines += _http(spec, layout, drained)
        lines.append("")
        stream_ports = [port for port in lb.ports if port not in (80, 443)]
    else:
        stream_ports = list(lb.ports)
    if stream_ports:
        lines += _stream(spec, layout, stream_ports, drained)
    return "\n".join(lines).rstrip("\n") + "\n"
