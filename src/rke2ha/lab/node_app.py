"""What each port of a lab node answers: plain request -> response logic, no sockets.

`NodeApp.handle(role, request, state)` is the whole behaviour of a node emulator; the
aiohttp adapter in `node_server` only translates requests and responses. Every response
carries `X-Rke2ha-Node: <name>`, so a client behind the load balancer can tell which node
served it (the `lb.spread` check relies on it).

Per port (real numbers; the lab may add an offset):

- 80 and 443, ingress: behaves like RKE2's ingress-nginx by Host (`ingress_model` holds
  the decisions and their sources). A Host without an Ingress lands in the catch-all server
  `_`: ingress-nginx's `/healthz` answers 200 there (on both ports, as the template's `_`
  server listens on both; whatever `load_balancer.health.path` says), anything else is the
  default backend's 404. Traefik answers 404 to every path there: its `/ping` is on the
  `traefik` entry point, which RKE2 does not publish (sources in `healthplan.py`). Once Rancher is
  installed (`rancher_installed`, the default) the Rancher hostname has its own server:
  with Rancher's TLS at the ingress (layer 4) port 80 answers ingress-nginx's 308 to
  `https://<hostname><uri>`; port 443 reaches the Rancher stand-in. With Rancher
  `tls=external` (layer 7) there is no ssl-redirect: port 80 reaches Rancher with
  `X-Forwarded-Proto` rewritten to the scheme the ingress saw (http) unless the ingress
  config trusts forwarded headers, and Rancher answers 302 to https for anything but
  `/ping`, `/health*` and `/.well-known/` while it is told http — the redirect loop of a
  layer 7 load balancer without `use-forwarded-headers`. Before Rancher is installed the
  hostname is just another Host: the catch-all answers.
- The Rancher stand-in (reached as above): `/ping` -> `pong`, `/healthz` -> `ok`,
  `/v3/subscribe` -> a websocket streaming one JSON event every 200 ms and echoing text
  the client sends, `/` and `/dashboard...` (the UI) -> a line naming the node, other
  paths a Rancher-style 404.
- 6443, kube-apiserver. `/readyz`, `/livez`, `/healthz` and `/version` need credentials
  like a default RKE2 (anonymous auth off): no or a wrong bearer token -> 401 with a
  Kubernetes `Status` body; the lab health token -> 200. With `rke2.anonymous_health`
  anonymous callers may read `/livez` and `/readyz` only (what the authentication-config
  rke2ha renders allows), never `/version`. While joining, `/readyz` (and `/healthz`) is
  500 with a failed etcd check, as kube-apiserver's healthz handler answers.
- 9345, RKE2 supervisor. `/ping` -> `pong` and `/cacerts` -> the lab CA PEM without
  credentials; the node-authenticated `/v1-*` API answers 401; anything else 404.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rke2ha.lab import ingress_model
from rke2ha.lab.ingress_model import IngressSettings, Server
from rke2ha.lab.node_states import EXPOSURE, NodeState, PortRole

NODE_HEADER = "X-Rke2ha-Node"
SUBSCRIBE_PATH = "/v3/subscribe"
EVENT_INTERVAL = 0.2
DEFAULT_KUBE_VERSION = "v1.31.4+rke2r1"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

_DEFAULT_BACKEND_404 = {"nginx": b"default backend - 404", "traefik": b"404 page not found\n"}
# kube-apiserver's /readyz checks; the two etcd ones fail until the node has joined.
_READYZ_CHECKS = ("ping", "log", "etcd", "etcd-readiness", "informer-sync", "shutdown")
_NOT_READY_CHECKS = frozenset({"etcd", "etcd-readiness"})
_ANONYMOUS_HEALTH_PATHS = frozenset({"/livez", "/readyz"})
_APISERVER_HEALTH_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


@dataclass(frozen=True)
class NodeProfile:
    """Everything a node emulator needs to answer, taken from the spec once."""

    name: str
    hostname: str
    ingress: Literal["nginx", "traefik"]
    layer7: bool  # Rancher tls=external: its Ingress has no TLS and no ssl-redirect
    anonymous_health: bool
    health_token: str = field(repr=False)
    ca_pem: bytes = field(repr=False)
    kube_version: str = DEFAULT_KUBE_VERSION
    # Rancher's Ingress exists (its chart is installed): the hostname has its own server.
    rancher_installed: bool = True
    # What the rendered ingress HelmChartConfig told the controller (default: RKE2's).
    ingress_settings: IngressSettings = field(default_factory=IngressSettings)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the app sees it; header names are lower-case."""

    method: str
    target: str  # path and query as sent, still percent-encoded
    headers: Mapping[str, str] = field(default_factory=dict)
    wants_websocket: bool = False
    peer: str | None = None  # the client address (after a PROXY header: the one it names)
    proxy_destination_port: int | None = None  # from a PROXY header, when one was read

    @property
    def path(self) -> str:
        return self.target.partition("?")[0] or "/"

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def host(self) -> str:
        """The Host header without port, lower-case, without a trailing dot."""
        host = self.headers.get("host", "").strip().lower()
        if host.startswith("["):  # [::1]:443
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        return host.rstrip(".")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AcceptWebSocket:
    """Upgrade to a websocket and run `stream` on it (the Rancher `/v3/subscribe`)."""

    stream: SubscribeStream
    headers: tuple[tuple[str, str], ...] = ()


Reply = Response | AcceptWebSocket


class SubscribeStream:
    """The Rancher stand-in's event stream: numbered events, and echoes of client text.

    Sans-I/O: the adapter calls `tick()` every `interval` seconds and `echo()` for each
    text message, and sends what they return.
    """

    def __init__(self, node: str, interval: float = EVENT_INTERVAL) -> None:
        self.node = node
        self.interval = interval
        self.counter = 0

    def tick(self) -> str:
        self.counter += 1
        return json.dumps({"name": "ping", "node": self.node, "counter": self.counter})

    def echo(self, text: str) -> str:
        return json.dumps({"name": "echo", "node": self.node, "data": text})


def _kube_status(code: int, reason: str, message: str) -> Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return Response(code, json.dumps(body, indent=2).encode() + b"\n", JSON)


class NodeApp:
    """The answers of one node emulator, per port role and node state."""

    def __init__(self, profile: NodeProfile) -> None:
        self.profile = profile
        self._node_header = ((NODE_HEADER, profile.name),)

    def handle(self, role: PortRole, request: Request, state: NodeState) -> Reply:
        """The reply to `request` on the port for `role` while the node is in `state`."""
        reply = self._route(role, request, state)
        if isinstance(reply, AcceptWebSocket):
            return AcceptWebSocket(reply.stream, reply.headers + self._node_header)
        return Response(
            reply.status, reply.body, reply.content_type, reply.headers + self._node_header
        )

    def _route(self, role: PortRole, request: Request, state: NodeState) -> Reply:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        if role is PortRole.INGRESS_HTTP:
            return self._ingress(request, "http")
        if role is PortRole.INGRESS_HTTPS:
            return self._ingress(request, "https")
        if role is PortRole.APISERVER:
            return self._apiserver(request, EXPOSURE[state].apiserver_ready)
        return self._supervisor(request)

    # ---- ingress (80, 443) and the Rancher stand-in behind it -------------------------

    def _ingress(self, request: Request, listener_scheme: str) -> Reply:
        profile = self.profile
        server = ingress_model.choose_server(
            request.host, profile.hostname, profile.rancher_installed
        )
        if server is Server.CATCH_ALL:
            # Only ingress-nginx answers health here; Traefik's ping is on its own entry
            # point, which RKE2 does not publish (sources in healthplan.py): its 404.
            nginx_health = ingress_model.INGRESS_NGINX_HEALTH_PATH
            if profile.ingress == "nginx" and request.path == nginx_health:
                return Response(200, b"ok")
            return Response(404, _DEFAULT_BACKEND_404[profile.ingress])
        settings = profile.ingress_settings
        scheme = ingress_model.access_scheme(
            listener_scheme,
            request.headers,
            settings,
            peer=request.peer,
            proxy_destination_port=request.proxy_destination_port,
        )
        if not profile.layer7 and scheme == "http":
            # Rancher's Ingress has a tls: section, so ingress-nginx's ssl-redirect answers.
            host = ingress_model.redirect_host(
                request.headers.get("host", ""), request.headers, settings.trusts(request.peer)
            )
            location = ingress_model.ssl_redirect_location(host, request.target)
            body = b"<html><body>308 Permanent Redirect</body></html>\n"
            return Response(
                ingress_model.SSL_REDIRECT_CODE, body, "text/html", (("Location", location),)
            )
        # The ingress proxies to Rancher's plain http port with X-Forwarded-Proto:
        # $pass_access_scheme and Host: $best_http_host (ingress_model.best_http_host).
        rancher_host = ingress_model.best_http_host(
            request.headers.get("host", ""), request.headers, settings.trusts(request.peer)
        )
        redirect = ingress_model.rancher_redirect(
            request.method, request.path, request.target, rancher_host, scheme
        )
        if redirect is None:
            return self._rancher(request)
        status, location = redirect
        if status == 400:
            return Response(400, b"Use HTTPS\n")
        body = f'<a href="{location}">Found</a>.\n\n'.encode()
        return Response(status, body, "text/html; charset=utf-8", (("Location", location),))

    def _rancher(self, request: Request) -> Reply:
        path = request.path
        if path == "/ping":
            return Response(200, b"pong")
        if path == "/healthz":
            return Response(200, b"ok")
        if path == SUBSCRIBE_PATH:
            if request.wants_websocket:
                return AcceptWebSocket(SubscribeStream(self.profile.name))
            return Response(400, b"websocket upgrade required\n")
        if path == "/" or path.startswith("/dashboard"):  # the UI Rancher serves
            return Response(200, f"rke2ha lab Rancher stand-in on {self.profile.name}\n".encode())
        body = {"type": "error", "status": "404", "code": "NotFound", "message": "not found"}
        return Response(404, json.dumps(body).encode(), JSON)

    # ---- kube-apiserver (6443) ---------------------------------------------------------

    def _authenticated(self, request: Request) -> bool | None:
        """True: the lab token; False: wrong credentials; None: no credentials at all."""
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return hmac.compare_digest(token.strip().encode(), self.profile.health_token.encode())

    def _apiserver(self, request: Request, ready: bool) -> Response:
        path = request.path
        authenticated = self._authenticated(request)
        anonymous_ok = (
            authenticated is None
            and self.profile.anonymous_health
            and path in _ANONYMOUS_HEALTH_PATHS
        )
        if not (authenticated or anonymous_ok):
            # A wrong token is 401 even where anonymous access is allowed: Kubernetes
            # tries anonymous only when no credentials were presented.
            return _kube_status(401, "Unauthorized", "Unauthorized")
        if path == "/livez":
            return Response(200, b"ok")
        if path in _APISERVER_HEALTH_PATHS:
            return self._readyz(path.strip("/"), request.query, ready)
        if path == "/version":
            return Response(200, self._version_body(), JSON)
        return _kube_status(404, "NotFound", "the server could not find the requested resource")

    def _readyz(self, name: str, query: str, ready: bool) -> Response:
        verbose = "verbose" in query.split("&")
        if ready and not verbose:
            return Response(200, b"ok")
        lines = []
        for check in _READYZ_CHECKS:
            failed = not ready and check in _NOT_READY_CHECKS
            lines.append(f"[-]{check} failed: reason withheld" if failed else f"[+]{check} ok")
        verdict = f"{name} check passed" if ready else f"{name} check failed"
        body = ("\n".join(lines) + f"\n{verdict}\n").encode()
        return Response(200 if ready else 500, body)

    def _version_body(self) -> bytes:
        version = self.profile.kube_version
        match = _VERSION.match(version)
        major, minor = match.groups() if match else ("1", "0")
        body = {
            "major": major,
            "minor": minor,
            "gitVersion": version,
            "gitTreeState": "clean",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
        return json.dumps(body, indent=2).encode() + b"\n"

    # ---- RKE2 supervisor (9345) ----------------------------------------------------------

    def _supervisor(self, request: Request) -> Response:
        path = request.path
        if path == "/ping":
            return Response(200, b"pong")
        if path == "/cacerts":
            return Response(200, self.profile.ca_pem)
        if path.startswith("/v1-"):
            return Response(401, b"Unauthorized\n")
        return Response(404, b"404 page not found\n")
