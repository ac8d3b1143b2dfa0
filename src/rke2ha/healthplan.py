"""What "healthy" means for each load balancer port, derived once from the spec.

Every engine (the built-in load balancer, HAProxy, nginx, the AWS NLB) and `check` read the
same plan, so the RKE2/Rancher specifics of DESIGN.md §1 are encoded in one place:

- 80 and 443 -> HTTP `GET <ingress health path>` on node port 80 with the Rancher Host
  header (layer 7 reaches the nodes on 80 anyway).
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

from rke2ha.spec import Spec

INGRESS_PORT = 80
APISERVER_PORT = 6443
SUPERVISOR_PORT = 9345


@dataclass(frozen=True)
class HttpProbe:
    """One HTTP(S) request to a node; the probe passes when the status (and body) match."""

    scheme: Literal["http", "https"]
    port: int  # the node port the probe connects to
    path: str
    host_header: str | None
    ok_statuses: tuple[int, ...]
    expect_body: str | None = None  # exact body after stripping whitespace
    bearer_token_file: Path | None = None

    @property
    def readiness_unknown_statuses(self) -> tuple[int, ...]:
        """Accepted statuses that prove the server answers but not that it is ready."""
        return tuple(s for s in self.ok_statuses if s == 401)


@dataclass(frozen=True)
class PortHealth:
    """How the load balancer decides that a node may receive traffic on `frontend_port`.

    `probes` all have to pass (9345 needs both the supervisor and the apiserver).
    """

    frontend_port: int
    backend_port: int
    probes: tuple[HttpProbe, ...]
    why: str


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


def ingress_probe(spec: Spec) -> HttpProbe:
    return HttpProbe(
        scheme="http",
        port=INGRESS_PORT,
        path=spec.health_path,
        host_header=spec.hostname,
        ok_statuses=(200,),
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
        return PortHealth(
            frontend_port,
            backend,
            (ingress_probe(spec),),
            f"ingress health {spec.health_path} on node port 80 with Host {spec.hostname}",
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


def health_plan(spec: Spec) -> list[PortHealth]:
    """The health rule of every load balancer port, in the spec's port order."""
    return [port_health(spec, port) for port in spec.load_balancer.ports]
