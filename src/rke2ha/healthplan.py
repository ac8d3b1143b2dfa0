"""What "healthy" means for each load balancer port, derived once from the spec.

Every engine (the built-in load balancer, HAProxy, nginx, the AWS NLB, the DNS server's
address choice) and `check` read the same plan, so the RKE2/Rancher specifics are encoded
in one place (README: Health checks; docs/architecture.md: Health checks):

- 80 and 443 -> HTTP `GET <ingress health path>` on node port 80 *without* the Rancher
  hostname: the Host is the node's own address (HAProxy: an HTTP/1.0 request without Host),
  which no Ingress names, so the request reaches the ingress controller's catch-all server.
  ingress-nginx serves `/healthz` only there (kubernetes/ingress-nginx
  rootfs/etc/nginx/template/nginx.tmpl: `{{ if eq $server.Hostname "_" }}` ... "health
  checks in cloud providers require the use of port 80"). With the Rancher hostname the
  request would reach Rancher's Ingress once it exists, and for a TLS Ingress ingress-nginx
  answers 308 to https: every node would leave rotation the moment Rancher is installed.
  Traefik (`ingress: traefik`): its ping lives on the `traefik` entry point (the chart
  passes `--ping=true` and probes `/ping` on `ports.traefik.port`, 8080:
  traefik/traefik-helm-chart traefik/templates/_podtemplate.tpl), which RKE2's chart does
  not publish on the node: only `web` and `websecure` get hostPorts 80/443
  (rancher/rke2-charts packages/rke2-traefik/generated-changes/patch/values.yaml.patch).
  On port 80 Traefik answers a path no router matches with its own 404, so 404 (or 200,
  where ping was moved to `web`) shows that Traefik serves the node's port 80.
- `rancher_ping_probe` (`GET /ping` through 443 with SNI and Host = the Rancher hostname,
  expecting `pong`) is a separate, named check for `check` only. It never decides
  rotation: before Rancher is installed it fails on every node, and the nodes must stay in.
- With `load_balancer.send_proxy` (layer 4) the 80/443 probes start with a PROXY v2
  header, because the ingress configured to expect one refuses a connection without it.
- 6443 -> HTTPS `GET /readyz`. RKE2 turns anonymous auth off, so an anonymous check gets
  401: that counts as "apiserver up, readiness unknown" unless a bearer token or
  anonymous health endpoints let the check see real readiness, then only 200 passes.
- 9345 -> HTTPS `GET /ping` answering `pong` *and* the node's 6443 check: 9345 listens
  before the node has joined, and sending joins there fails them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rke2ha.spec import INGRESS_HEALTH_PATHS, Spec

INGRESS_PORT = 80
APISERVER_PORT = 6443
SUPERVISOR_PORT = 9345


@dataclass(frozen=True)
class HttpProbe:
    """One HTTP(S) request to a node; the probe passes when the status (and body) match."""

    scheme: Literal["http", "https"]
    port: int  # the node port the probe connects to
    path: str
    # None: the node's own address (HAProxy: an HTTP/1.0 request without Host, as it cannot
    # vary the header per server); either reaches the ingress's catch-all server.
    host_header: str | None
    ok_statuses: tuple[int, ...]
    expect_body: str | None = None  # exact body after stripping whitespace
    bearer_token_file: Path | None = None
    send_proxy: bool = False  # a PROXY protocol v2 header goes first (the ingress expects it)


@dataclass(frozen=True)
class PortHealth:
    """How the load balancer decides that a node may receive traffic on `frontend_port`.

    `probes` all have to pass (9345 needs both the supervisor and the apiserver).
    """

    frontend_port: int
    backend_port: int
    probes: tuple[HttpProbe, ...]
    why: str
    # Traffic to the backend starts with a PROXY v2 header (`load_balancer.send_proxy`, only
    # to the ingress: the apiserver and the supervisor cannot read one).
    send_proxy: bool = False


def readyz_probe(spec: Spec) -> HttpProbe:
    health = spec.load_balancer.health
    if health.readyz_status is not None:
        statuses = tuple(health.readyz_status)
    elif spec.readyz_requires_200:
        statuses = (200,)
    else:
        statuses = (200, 401)
    return HttpProbe(
        scheme="https",
        port=APISERVER_PORT,
        path="/readyz",
        host_header=None,
        ok_statuses=statuses,
        bearer_token_file=spec.health_token_file,
    )


# What each ingress controller answers on node port 80 to a request for no known host.
# ingress-nginx: `/healthz` -> 200 in the catch-all server `_`. Traefik: its own 404 for a
# path no router matches (ping is on the unpublished `traefik` entry point), 200 where ping
# was moved to `web`. See the module docstring for the sources.
INGRESS_HEALTH_STATUSES: dict[str, tuple[int, ...]] = {"nginx": (200,), "traefik": (200, 404)}


def _send_proxy(spec: Spec) -> bool:
    """Whether traffic to the nodes' 80/443 starts with a PROXY header (layer 4 only)."""
    lb = spec.load_balancer
    return bool(lb.send_proxy) and lb.layer == 4


def ingress_probe(spec: Spec) -> HttpProbe:
    """The ingress controller's own health answer on node port 80, from its catch-all server.

    No Rancher hostname: with it, the request reaches Rancher's Ingress once that exists
    (308 to https on ingress-nginx), and the nodes would leave rotation exactly when
    Rancher goes live.
    """
    custom = spec.health_path != INGRESS_HEALTH_PATHS[spec.ingress]
    return HttpProbe(
        scheme="http",
        port=INGRESS_PORT,
        path=spec.health_path,
        host_header=None,
        ok_statuses=(200,) if custom else INGRESS_HEALTH_STATUSES[spec.ingress],
        send_proxy=_send_proxy(spec),
    )


def rancher_ping_probe(spec: Spec) -> HttpProbe:
    """Rancher itself answers: `/ping` on 443 with SNI/Host = the Rancher hostname.

    For `check` only: a load balancer must not take nodes out with it, because it fails
    on every node until Rancher is installed.
    """
    return HttpProbe(
        scheme="https",
        port=443,
        path="/ping",
        host_header=spec.hostname,
        ok_statuses=(200,),
        expect_body="pong",
        send_proxy=_send_proxy(spec),
    )


def supervisor_probe() -> HttpProbe:
    return HttpProbe(
        scheme="https",
        port=SUPERVISOR_PORT,
        path="/ping",
        host_header=None,
        ok_statuses=(200,),
        expect_body="pong",
    )


def port_health(spec: Spec, frontend_port: int) -> PortHealth:
    """The health rule for one load balancer port (any port not named below: plain TCP)."""
    layer7 = spec.load_balancer.layer == 7
    if frontend_port in (80, 443):
        backend = INGRESS_PORT if layer7 else frontend_port
        probe = ingress_probe(spec)
        statuses = "|".join(map(str, probe.ok_statuses))
        proxy = ", after a PROXY v2 header" if probe.send_proxy else ""
        return PortHealth(
            frontend_port,
            backend,
            (probe,),
            f"ingress health {probe.path} -> {statuses} on node port 80, catch-all server "
            f"(no Rancher Host){proxy}",
            send_proxy=_send_proxy(spec),
        )
    if frontend_port == APISERVER_PORT:
        probe = readyz_probe(spec)
        why = "kube-apiserver /readyz" + (
            " (401 accepted: apiserver up, readiness unknown)" if 401 in probe.ok_statuses else ""
        )
        return PortHealth(frontend_port, APISERVER_PORT, (probe,), why)
    if frontend_port == SUPERVISOR_PORT:
        return PortHealth(
            frontend_port,
            SUPERVISOR_PORT,
            (supervisor_probe(), readyz_probe(spec)),
            "supervisor /ping and apiserver /readyz: a node not yet joined gets no joins",
        )
    return PortHealth(frontend_port, frontend_port, (), "TCP connect")
