"""How RKE2's ingress-nginx and Rancher behind it answer a request: pure decisions, no I/O.

The lab's node emulator must not share rke2ha's own assumptions about the ingress, so this
module follows the sources, not our health plan. It is differential-tested against real
nginx configured the way ingress-nginx configures itself (tests/lab/test_emulator_vs_nginx.py).

ingress-nginx (kubernetes/ingress-nginx, rootfs/etc/nginx/template/nginx.tmpl and
rootfs/etc/nginx/lua/lua_ingress.lua):

- Servers are chosen by Host. A Host with no Ingress falls to the catch-all server `_`,
  the `default_server` of both listeners (80 and 443). Only that server has `location
  /healthz` returning 200 (`{{ if eq $server.Hostname "_" }}` ... "health checks in cloud
  providers require the use of port 80"); every other path of it goes to the default
  backend, which answers 404.
- `$pass_access_scheme` is the scheme of the listener (`set $pass_access_scheme $scheme`);
  only with `use-forwarded-headers: "true"` does lua_ingress.rewrite() take the client's
  `X-Forwarded-Proto` (and `X-Forwarded-Host` as the host) instead. With
  `use-proxy-protocol` a connection whose PROXY header names destination port 443 counts
  as https. The location then sends `X-Forwarded-Proto: $pass_access_scheme` upstream:
  whatever the client said is overwritten unless the headers are trusted.
- ssl-redirect (on by default) for an Ingress with a `tls:` section: when
  `$pass_access_scheme` is http, answer `308` (`http-redirect-code`) to
  `https://<host without port><request_uri>`, the request URI's trailing `/` removed
  (preserve-trailing-slash is off by default) and no port (use-port-in-redirects is off).

Rancher's chart (rancher/rancher, chart/templates/ingress.yaml): with `tls: external` the
Ingress has no `tls:` section and carries `nginx.ingress.kubernetes.io/ssl-redirect:
"false"`; otherwise it has a `tls:` section for the hostname (so the 308 above applies).

The location proxies with `Host: $best_http_host` (nginx.tmpl), so Rancher sees the Host
the ingress chose, a trusted X-Forwarded-Host included.

Rancher itself serves plain HTTP behind the ingress and wraps its handler in
rancher/dynamiclistener's HTTPRedirect (redirect.go; server/server.go): unless
`X-Forwarded-Proto` is `https` or `wss`, or the path starts with `/.well-known/`, `/ping`
or `/health`, a GET or HEAD gets `302` to `https://<Host with its port mangled to
N*1000+443><request URI>` and any other method `400 Use HTTPS`. That is the loop of a
layer 7 load balancer whose X-Forwarded-Proto the ingress overwrites (rancher/rancher#31071,
#52316 "a 302 redirect to the same URL infinitely", #17887; Traefik: #43875): the client
asked for https, Rancher is told http and sends it back to the same https URL.

Traefik (rke2-traefik) is modelled with the same shapes; its forwarded headers are trusted
only from `forwardedHeaders.trustedIPs` (traefik docs: EntryPoints, forwardedHeaders).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

INGRESS_NGINX_HEALTH_PATH = "/healthz"
SSL_REDIRECT_CODE = 308  # ingress-nginx http-redirect-code default
RANCHER_REDIRECT_CODE = 302  # dynamiclistener HTTPRedirect: http.StatusFound
# dynamiclistener HTTPRedirect serves these path prefixes on plain http without redirecting.
RANCHER_PLAIN_HTTP_PREFIXES = ("/.well-known/", "/ping", "/health")


class Server(StrEnum):
    CATCH_ALL = "_"  # ingress-nginx's catch-all server: /healthz and the default backend
    RANCHER = "rancher"  # the server of Rancher's Ingress (its hostname)


@dataclass(frozen=True)
class IngressSettings:
    """What the ingress was configured with (the rendered HelmChartConfig; see
    `lab.ingress_config`). The defaults are RKE2's: nothing trusted, no PROXY protocol.

    Traefik trusts forwarded headers only from `trustedIPs`; the lab cannot model that
    list, because every lab process talks from 127.0.0.1 whatever its own address, so a
    non-empty list counts as trust here (`rke2ha render` fills it with the LB addresses).
    """

    use_forwarded_headers: bool = False
    proxy_protocol: bool = False

    def trusts(self, peer: str | None = None) -> bool:
        return self.use_forwarded_headers


def choose_server(host: str, hostname: str, rancher_installed: bool) -> Server:
    """The server block a request lands in: Rancher's only once its Ingress exists."""
    if rancher_installed and host == hostname.rstrip(".").lower():
        return Server.RANCHER
    return Server.CATCH_ALL


def access_scheme(
    listener_scheme: str,
    headers: Mapping[str, str],
    settings: IngressSettings,
    *,
    peer: str | None = None,
    proxy_destination_port: int | None = None,
) -> str:
    """ingress-nginx's `$pass_access_scheme` (lowercase header names in `headers`)."""
    scheme = listener_scheme
    forwarded = headers.get("x-forwarded-proto")
    if settings.trusts(peer) and forwarded:
        scheme = forwarded
    if settings.proxy_protocol and proxy_destination_port == 443:
        scheme = "https"
    return scheme


def best_http_host(host_header: str, headers: Mapping[str, str], trusted: bool) -> str:
    """ingress-nginx's `$best_http_host`: the Host as sent or, with forwarded headers trusted,
    the first X-Forwarded-Host (lua_ingress.lua rewrite()). It is also the Host the upstream
    (Rancher) gets: nginx.tmpl's `proxy_set_header Host $best_http_host`."""
    if trusted and headers.get("x-forwarded-host"):
        return headers["x-forwarded-host"].split(",")[0]
    return host_header


def redirect_host(host_header: str, headers: Mapping[str, str], trusted: bool) -> str:
    """ingress-nginx's redirect host: `$best_http_host` up to its first `:`."""
    return best_http_host(host_header, headers, trusted).split(":")[0]


def ssl_redirect_location(host: str, request_uri: str) -> str:
    """Where ingress-nginx's ssl-redirect sends a request (trailing `/` dropped, no port)."""
    uri = request_uri[:-1] if request_uri.endswith("/") else request_uri
    return f"https://{host}{uri}"


def mangle_port(host_header: str) -> str:
    """dynamiclistener's manglePort: a Host with a port gets port N*1000+443 (80 -> 443)."""
    host, sep, port = host_header.rpartition(":")
    if not sep or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        return host_header
    if not host or (":" in host and not host.startswith("[")):
        return host_header  # a bare IPv6 address: SplitHostPort fails, kept as is
    return f"{host}:{(int(port) // 1000) * 1000 + 443}"


def rancher_redirect(
    method: str, path: str, request_uri: str, host_header: str, forwarded_proto: str
) -> tuple[int, str] | None:
    """Rancher's answer on plain http when it must not serve: (302, Location) or
    (400, ""); None when Rancher serves the request."""
    if forwarded_proto in ("https", "wss") or path.startswith(RANCHER_PLAIN_HTTP_PREFIXES):
        return None
    if method not in ("GET", "HEAD"):
        return (400, "")
    return (RANCHER_REDIRECT_CODE, f"https://{mangle_port(host_header)}{request_uri}")
