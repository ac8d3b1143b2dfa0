"""What each node port answers, tested as plain request -> response logic (no sockets)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rke2ha.lab.ingress_model import IngressSettings
from rke2ha.lab.node_app import (
    NODE_HEADER,
    AcceptWebSocket,
    NodeApp,
    NodeProfile,
    Reply,
    Request,
    Response,
    SubscribeStream,
)
from rke2ha.lab.node_states import NodeState, PortRole

HOST = "rancher.lab.rke2ha.test"
TOKEN = "s3cret-token"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

PROFILE = NodeProfile(
    name="node-2",
    hostname=HOST,
    ingress="nginx",
    layer7=False,
    anonymous_health=False,
    health_token=TOKEN,
    ca_pem=CA_PEM,
)


def ask(
    role: PortRole,
    target: str,
    *,
    host: str | None = None,
    profile: NodeProfile = PROFILE,
    state: NodeState = NodeState.READY,
    method: str = "GET",
    websocket: bool = False,
    **headers: str,
) -> Reply:
    all_headers = {name.replace("_", "-").lower(): value for name, value in headers.items()}
    if host is not None:
        all_headers["host"] = host
    request = Request(method, target, all_headers, websocket)
    return NodeApp(profile).handle(role, request, state)


def response(reply: Reply) -> Response:
    assert isinstance(reply, Response), reply
    assert (NODE_HEADER, "node-2") in reply.headers
    return reply


def header(reply: Response, name: str) -> str | None:
    return dict(reply.headers).get(name)


# ---- port 80 --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["other.example.com", "127.0.0.1:80", None])
@pytest.mark.parametrize("role", [PortRole.INGRESS_HTTP, PortRole.INGRESS_HTTPS])
def test_catch_all_server_answers_healthz_for_hosts_without_an_ingress(
    host: str | None, role: PortRole
) -> None:
    reply = response(ask(role, "/healthz", host=host))
    assert (reply.status, reply.body) == (200, b"ok")


def test_healthz_with_the_rancher_host_is_rancher_s_once_it_is_installed() -> None:
    # ingress-nginx has /healthz only in the catch-all server `_`: with Rancher's Ingress the
    # hostname has its own server, whose port 80 redirects (Rancher's Ingress has TLS).
    installed = response(ask(PortRole.INGRESS_HTTP, "/healthz", host=HOST))
    assert installed.status == 308
    absent = dataclasses.replace(PROFILE, rancher_installed=False)
    before = response(ask(PortRole.INGRESS_HTTP, "/healthz", host=HOST, profile=absent))
    assert (before.status, before.body) == (200, b"ok")
    # Before Rancher, the hostname is just a Host without an Ingress: 404 on 443 too.
    assert response(ask(PortRole.INGRESS_HTTPS, "/ping", host=HOST, profile=absent)).status == 404


def test_traefik_answers_404_on_port_80_for_hosts_without_a_router() -> None:
    # Traefik's /ping is on its `traefik` entry point, not on `web` (port 80).
    traefik = dataclasses.replace(PROFILE, ingress="traefik")
    for path in ("/ping", "/healthz"):
        reply = response(ask(PortRole.INGRESS_HTTP, path, host="x.test", profile=traefik))
        assert (reply.status, reply.body) == (404, b"404 page not found\n"), path


@pytest.mark.parametrize(
    ("target", "location"),
    [
        # ingress-nginx drops one trailing slash (preserve-trailing-slash is off) and keeps
        # the Host as the client wrote it ($best_http_host), without its port.
        ("/", f"https://{HOST.upper()}"),
        ("/dashboard/", f"https://{HOST.upper()}/dashboard"),
        ("/dashboard/home?a=1&b=%20x", f"https://{HOST.upper()}/dashboard/home?a=1&b=%20x"),
        ("/v3/subscribe", f"https://{HOST.upper()}/v3/subscribe"),
    ],
)
def test_rancher_host_on_80_is_redirected_308(target: str, location: str) -> None:
    reply = response(ask(PortRole.INGRESS_HTTP, target, host=f"{HOST.upper()}:80"))
    assert reply.status == 308
    assert header(reply, "Location") == location


def test_the_ssl_redirect_names_no_port_even_when_the_lab_runs_with_an_offset() -> None:
    # use-port-in-redirects is off by default: the Host's port is dropped.
    reply = response(ask(PortRole.INGRESS_HTTP, "/x?y", host=f"{HOST}:20080"))
    assert header(reply, "Location") == f"https://{HOST}/x?y"


def test_other_hosts_on_80_get_the_default_backend() -> None:
    reply = response(ask(PortRole.INGRESS_HTTP, "/", host="grafana.example.com"))
    assert (reply.status, reply.body) == (404, b"default backend - 404")


L7 = dataclasses.replace(PROFILE, layer7=True)
TRUSTING = dataclasses.replace(L7, ingress_settings=IngressSettings(use_forwarded_headers=True))


def test_layer7_without_forwarded_headers_rancher_redirects_back_to_the_same_url() -> None:
    # The ingress overwrites X-Forwarded-Proto with http; Rancher (dynamiclistener's
    # HTTPRedirect) sends the client to https: the very URL it came from, a loop.
    looped = response(
        ask(PortRole.INGRESS_HTTP, "/dashboard/", host=f"{HOST}:10443", profile=L7,
            x_forwarded_proto="https")
    )  # fmt: skip
    assert looped.status == 302
    assert header(looped, "Location") == f"https://{HOST}:10443/dashboard/"
    plain_host = response(
        ask(PortRole.INGRESS_HTTP, "/", host=HOST, profile=L7, x_forwarded_proto="https")
    )
    assert header(plain_host, "Location") == f"https://{HOST}/"
    # Rancher serves /ping and /health* on plain http: those never show the loop.
    for path in ("/ping", "/healthz"):
        served = response(
            ask(PortRole.INGRESS_HTTP, path, host=HOST, profile=L7, x_forwarded_proto="https")
        )
        assert served.status == 200, path


def test_layer7_with_forwarded_headers_serves_rancher_when_the_lb_says_https() -> None:
    served = response(
        ask(PortRole.INGRESS_HTTP, "/", host=HOST, profile=TRUSTING, x_forwarded_proto="https")
    )
    assert served.status == 200
    told_http = response(
        ask(PortRole.INGRESS_HTTP, "/", host=HOST, profile=TRUSTING, x_forwarded_proto="http")
    )
    assert told_http.status == 302
    ws = ask(
        PortRole.INGRESS_HTTP,
        "/v3/subscribe",
        host=HOST,
        profile=TRUSTING,
        websocket=True,
        x_forwarded_proto="https",
    )
    assert isinstance(ws, AcceptWebSocket)
    # Layer 4 (Rancher's TLS at the ingress): a client's X-Forwarded-Proto changes nothing.
    l4 = response(ask(PortRole.INGRESS_HTTP, "/ping", host=HOST, x_forwarded_proto="https"))
    assert l4.status == 308


def test_proxy_protocol_to_port_443_counts_as_https() -> None:
    proxied = dataclasses.replace(PROFILE, ingress_settings=IngressSettings(proxy_protocol=True))
    request = Request("GET", "/ping", {"host": HOST}, proxy_destination_port=443)
    reply = response(NodeApp(proxied).handle(PortRole.INGRESS_HTTP, request, NodeState.READY))
    assert (reply.status, reply.body) == (200, b"pong")


# ---- port 443: the Rancher stand-in ---------------------------------------------------------


def test_rancher_stand_in_on_443() -> None:
    ping = response(ask(PortRole.INGRESS_HTTPS, "/ping", host=HOST))
    assert (ping.status, ping.body) == (200, b"pong")
    healthz = response(ask(PortRole.INGRESS_HTTPS, "/healthz", host=f"{HOST}."))
    assert healthz.status == 200
    assert response(ask(PortRole.INGRESS_HTTPS, "/nope", host=HOST)).status == 404
    assert response(ask(PortRole.INGRESS_HTTPS, "/ping", host="other.test")).status == 404


def test_subscribe_needs_a_websocket_upgrade() -> None:
    plain = response(ask(PortRole.INGRESS_HTTPS, "/v3/subscribe", host=HOST))
    assert plain.status == 400
    reply = ask(PortRole.INGRESS_HTTPS, "/v3/subscribe?x=1", host=HOST, websocket=True)
    assert isinstance(reply, AcceptWebSocket)
    assert (NODE_HEADER, "node-2") in reply.headers


def test_subscribe_stream_counts_and_echoes() -> None:
    stream = SubscribeStream("node-2")
    first, second = json.loads(stream.tick()), json.loads(stream.tick())
    assert (first["counter"], second["counter"]) == (1, 2)
    assert first["node"] == "node-2" and first["name"] == "ping"
    assert json.loads(stream.echo("hello")) == {"name": "echo", "node": "node-2", "data": "hello"}
    assert stream.interval == 0.2


def test_methods_other_than_get_and_head_are_refused() -> None:
    reply = response(ask(PortRole.INGRESS_HTTPS, "/ping", host=HOST, method="POST"))
    assert reply.status == 405
    assert response(ask(PortRole.INGRESS_HTTPS, "/ping", host=HOST, method="HEAD")).status == 200


# ---- port 6443: kube-apiserver --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/readyz", "/livez", "/healthz", "/version"])
def test_apiserver_refuses_anonymous_callers_with_a_kube_status(path: str) -> None:
    reply = response(ask(PortRole.APISERVER, path))
    assert reply.status == 401
    body = json.loads(reply.body)
    assert body["kind"] == "Status" and body["code"] == 401 and body["reason"] == "Unauthorized"


@pytest.mark.parametrize("path", ["/readyz", "/livez", "/healthz"])
def test_apiserver_health_with_the_token(path: str) -> None:
    reply = response(ask(PortRole.APISERVER, path, authorization=f"Bearer {TOKEN}"))
    assert (reply.status, reply.body) == (200, b"ok")


def test_version_with_the_token() -> None:
    reply = response(ask(PortRole.APISERVER, "/version", authorization=f"bearer {TOKEN}"))
    assert reply.status == 200
    version = json.loads(reply.body)
    assert (version["major"], version["minor"], version["gitVersion"]) == (
        "1",
        "31",
        "v1.31.4+rke2r1",
    )


@pytest.mark.parametrize("credentials", ["Bearer wrong", "Basic dXNlcjpwYXNz", "Bearer "])
def test_wrong_credentials_are_401_even_where_anonymous_is_allowed(credentials: str) -> None:
    anonymous = dataclasses.replace(PROFILE, anonymous_health=True)
    reply = response(
        ask(PortRole.APISERVER, "/readyz", profile=anonymous, authorization=credentials)
    )
    assert reply.status == 401


def test_anonymous_health_opens_livez_and_readyz_only() -> None:
    anonymous = dataclasses.replace(PROFILE, anonymous_health=True)
    assert response(ask(PortRole.APISERVER, "/readyz", profile=anonymous)).status == 200
    assert response(ask(PortRole.APISERVER, "/livez", profile=anonymous)).status == 200
    assert response(ask(PortRole.APISERVER, "/version", profile=anonymous)).status == 401
    assert response(ask(PortRole.APISERVER, "/healthz", profile=anonymous)).status == 401


def test_joining_apiserver_is_live_but_not_ready() -> None:
    auth = f"Bearer {TOKEN}"
    joining = NodeState.JOINING
    readyz = response(ask(PortRole.APISERVER, "/readyz", state=joining, authorization=auth))
    assert readyz.status == 500
    assert b"[-]etcd failed: reason withheld" in readyz.body
    assert readyz.body.endswith(b"readyz check failed\n")
    livez = response(ask(PortRole.APISERVER, "/livez", state=joining, authorization=auth))
    assert livez.status == 200
    # Authentication still comes first: an anonymous caller sees 401, not 500.
    anonymous = response(ask(PortRole.APISERVER, "/readyz", state=NodeState.JOINING))
    assert anonymous.status == 401


def test_verbose_readyz_lists_the_checks() -> None:
    reply = response(ask(PortRole.APISERVER, "/readyz?verbose", authorization=f"Bearer {TOKEN}"))
    assert reply.status == 200
    assert b"[+]etcd ok" in reply.body and reply.body.endswith(b"readyz check passed\n")


def test_unknown_apiserver_path_with_the_token_is_404() -> None:
    reply = response(ask(PortRole.APISERVER, "/api/v1/pods", authorization=f"Bearer {TOKEN}"))
    assert reply.status == 404
    assert json.loads(reply.body)["reason"] == "NotFound"


# ---- port 9345: the RKE2 supervisor ---------------------------------------------------------


@pytest.mark.parametrize("state", [NodeState.READY, NodeState.JOINING])
def test_supervisor_answers_without_credentials(state: NodeState) -> None:
    ping = response(ask(PortRole.SUPERVISOR, "/ping", state=state))
    assert (ping.status, ping.body) == (200, b"pong")
    cacerts = response(ask(PortRole.SUPERVISOR, "/cacerts", state=state))
    assert (cacerts.status, cacerts.body) == (200, CA_PEM)


def test_supervisor_node_api_needs_credentials() -> None:
    assert response(ask(PortRole.SUPERVISOR, "/v1-rke2/server-bootstrap")).status == 401
    assert response(ask(PortRole.SUPERVISOR, "/other")).status == 404


def test_request_host_parsing() -> None:
    assert Request("GET", "/", {"host": "[::1]:443"}).host == "::1"
    assert Request("GET", "/", {"host": "Rancher.Example.COM.:8443"}).host == "rancher.example.com"
    assert Request("GET", "/", {}).host == ""
    assert (Request("GET", "/a?b=c").path, Request("GET", "/a?b=c").query) == ("/a", "b=c")


def test_the_token_is_not_in_the_profile_repr() -> None:
    assert TOKEN not in repr(PROFILE)
