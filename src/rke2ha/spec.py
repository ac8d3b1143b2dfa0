"""The spec: one YAML file describing three RKE2 servers, a load balancer and a DNS record.

This module is the *shape* of the spec (pydantic v2 models; README: The spec): types, allowed
values, defaults and the few defaults that depend on other fields (lab addresses, the health
path of the chosen ingress, Rancher's TLS mode at layer 7). Whether a well-formed spec is
*sensible* (three servers, the hostname inside the zone, ...) is decided by `rules/`, which
can explain each finding with a fix and a source; pydantic errors here only say "this value
cannot be read as that type".

Unknown keys are errors everywhere (`extra="forbid"`): a misspelt key that is silently
ignored is how an operator ends up without the health check they thought they configured.
One `Spec` object flows from here to every component; nothing re-reads the YAML.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from rke2ha.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]

# The four ports the tutorial and RKE2's HA docs put behind the load balancer:
# ingress HTTP and HTTPS, the Kubernetes API and the RKE2 supervisor (registration).
DEFAULT_LB_PORTS = (80, 443, 6443, 9345)
INGRESS_HEALTH_PATHS = {"nginx": "/healthz", "traefik": "/ping"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_default=True)


class Node(_Strict):
    """One RKE2 server node. `address` is assigned by the provider for `aws`."""

    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    address: str | None = None
    zone: str | None = None
    region: str | None = None


class Health(_Strict):
    """Active health checks from the load balancer to every node (HAProxy's inter/rise/fall)."""

    interval: Duration = 1.0
    timeout: Duration = 1.0
    rise: Annotated[int, Field(ge=1, le=100)] = 2
    fall: Annotated[int, Field(ge=1, le=100)] = 2
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    # Path of the ingress health endpoint checked on node port 80 for ports 80/443;
    # filled in from `ingress` when not given.
    path: str | None = None
    # Bearer token sent with the 6443 `/readyz` check; with it only 200 counts as healthy.
    token_file: Path | None = None
    # Statuses of the 6443 `/readyz` check that count as up. None: [200] when a token or
    # anonymous health endpoints let the check see readiness, else [200, 401] (RKE2 answers
    # 401 to anonymous callers). `[200]` without either marks every RKE2 server down.
    readyz_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None


class TlsFiles(_Strict):
    """PEM certificate chain and key for the Rancher hostname (layer 7 only)."""

    cert: Path
    key: Path


class LoadBalancerPair(_Strict):
    """Two load balancer hosts sharing `load_balancer.address` as a VRRP virtual IP."""

    primary: str
    standby: str
    interface: str = "eth0"
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] = 51


class LoadBalancer(_Strict):
    layer: Literal[4, 7] = 4
    engine: Literal["builtin", "haproxy", "nginx", "aws-nlb"] = "builtin"
    # What clients reach: an IP (A record) or a hostname (CNAME). Assigned for aws, derived
    # from `lab.subnet` for the lab.
    address: str | None = None
    # More load balancer addresses published beside `address` (several LB hosts without a
    # virtual IP); the built-in DNS server serves only those whose health endpoint answers.
    extra_addresses: list[str] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=lambda: list(DEFAULT_LB_PORTS))
    health: Health = Field(default_factory=Health)
    tls: TlsFiles | None = None
    pair: LoadBalancerPair | None = None
    balance: Literal["leastconn", "roundrobin"] = "leastconn"
    connect_timeout: Duration = 5.0
    # Layer 4: Rancher keeps websockets (and kubectl watches) open for hours.
    idle_timeout: Duration = 3600.0
    # Layer 7 read/write timeout: Rancher's guide asks for 1800 s.
    http_timeout: Duration = 1800.0
    drain_timeout: Duration = 30.0
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    send_proxy: bool = False
    affinity: Literal["none", "cookie"] = "none"
    redirect_code: Literal[301, 308] = 308
    acme_passthrough: bool = False
    admin: str = "127.0.0.1:8404"
    # Other hostnames routed through this load balancer. Anything here draws the
    # `lb.dedicated` warning: the tutorial asks for a load balancer serving Rancher alone.
    shared_with: list[str] = Field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        """Every address clients may be sent to: `address` first, then `extra_addresses`."""
        return ([self.address] if self.address else []) + list(self.extra_addresses)


class Rke2(_Strict):
    # Render an authentication-config that opens /livez and /readyz (only those) to
    # anonymous callers. None: true for provider aws (an NLB cannot send credentials).
    anonymous_health: bool | None = None
    token_file: Path | None = None  # default: .rke2ha/secrets/rke2-token beside the spec
    version: str | None = None
    cni: Literal["canal", "calico", "cilium", "flannel", "none"] = "canal"


class Rfc2136(_Strict):
    server: str
    port: Port = 53
    key_name: str
    key_file: Path
    algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"


class Route53(_Strict):
    hosted_zone_id: str | None = None


class BuiltinDns(_Strict):
    # host:port the built-in server listens on; for the lab, derived from `lab.subnet`.
    listen: str | None = None
    nameserver: str | None = None  # NS name served for the zone; default ns1.<zone>
    axfr_allow: list[str] = Field(default_factory=list)  # client IPs allowed to AXFR


class Dns(_Strict):
    provider: Literal["builtin", "rfc2136", "route53", "manual"] = "builtin"
    zone: str
    record: Literal["A", "CNAME"] = "A"
    ttl: Annotated[int, Field(ge=1, le=604_800)] = 60
    target: str | None = None  # CNAME target; default: load_balancer.address
    builtin: BuiltinDns = Field(default_factory=BuiltinDns)
    rfc2136: Rfc2136 | None = None
    route53: Route53 | None = None


class Rancher(_Strict):
    replicas: Annotated[int, Field(ge=1, le=15)] = 3
    # rancher | letsEncrypt | secret | external; None: external at layer 7, rancher otherwise.
    tls_source: Literal["rancher", "letsEncrypt", "secret", "external"] | None = None
    version: str | None = None
    letsencrypt_email: str | None = None
    bootstrap_password_file: Path | None = None  # default: .rke2ha/secrets/bootstrap-password
    cert_manager_version: str = "v1.16.2"


class Aws(_Strict):
    region: str
    instance_type: str = "m5.xlarge"
    ami: str
    vpc_id: str | None = None
    allowed_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"])
    rke2_version: str
    scheme: Literal["internet-facing", "internal"] = "internet-facing"
    key_name: str | None = None
    volume_size_gb: Annotated[int, Field(ge=20, le=16_384)] = 100


class Lab(_Strict):
    subnet: str = "127.0.10.0/24"
    port_offset: Annotated[int, Field(ge=0, le=60_000)] = 10_000

    @model_validator(mode="after")
    def _loopback_only(self) -> Lab:
        # The lab never sends a packet off the machine: its subnet must be loopback.
        try:
            net = ipaddress.ip_network(self.subnet, strict=False)
        except ValueError as err:
            raise ValueError(f"subnet {self.subnet!r} is not an IP network: {err}") from None
        if not net.is_loopback or net.version != 4:
            raise ValueError(
                f"subnet {self.subnet} is not inside 127.0.0.0/8; the lab only uses "
                "loopback addresses (try 127.0.10.0/24)"
            )
        if net.num_addresses < 64:
            raise ValueError(f"subnet {self.subnet} is too small; use a /26 or larger")
        return self

    def host(self, index: int) -> str:
        """The address `index` inside the subnet (.10 LB, .11.. nodes, .53 DNS)."""
        return str(ipaddress.ip_network(self.subnet, strict=False).network_address + index)


LAB_LB_HOST, LAB_FIRST_NODE_HOST, LAB_DNS_HOST = 10, 11, 53


class Spec(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
    hostname: str
    provider: Literal["lab", "existing", "aws"]
    region: str | None = None
    ingress: Literal["nginx", "traefik"] = "nginx"
    nodes: list[Node]
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    rke2: Rke2 = Field(default_factory=Rke2)
    dns: Dns
    rancher: Rancher = Field(default_factory=Rancher)
    aws: Aws | None = None
    lab: Lab | None = None

    _source_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Spec:
        """Defaults that depend on other fields; everything else is a plain field default."""
        if self.load_balancer.health.path is None:
            self.load_balancer.health.path = INGRESS_HEALTH_PATHS[self.ingress]
        if self.rke2.anonymous_health is None:
            self.rke2.anonymous_health = self.provider == "aws"
        if self.rancher.tls_source is None:
            self.rancher.tls_source = "external" if self.load_balancer.layer == 7 else "rancher"
        if self.provider == "aws" and self.aws is not None and self.region is None:
            self.region = self.aws.region
        if self.provider == "lab":
            self._fill_lab_addresses()
        return self

    def _fill_lab_addresses(self) -> None:
        lab = self.lab if self.lab is not None else Lab()
        self.lab = lab
        if self.load_balancer.address is None:
            self.load_balancer.address = lab.host(LAB_LB_HOST)
        for index, node in enumerate(self.nodes):
            if node.address is None:
                node.address = lab.host(LAB_FIRST_NODE_HOST + index)
        if self.dns.builtin.listen is None:
            self.dns.builtin.listen = f"{lab.host(LAB_DNS_HOST)}:53"

    # ---- derived values every component shares -------------------------------------------

    @property
    def source_dir(self) -> Path:
        """The folder of the spec file; relative file paths in the spec are relative to it."""
        return self._source_dir

    def resolve(self, path: Path) -> Path:
        """`path` from the spec, made absolute against the spec file's folder."""
        return path if path.is_absolute() else self._source_dir / path

    @property
    def state_dir(self) -> Path:
        """Where rke2ha keeps state, secrets and generated files for this spec."""
        return self._source_dir / ".rke2ha"

    @property
    def rke2_token_file(self) -> Path:
        if self.rke2.token_file is not None:
            return self.resolve(self.rke2.token_file)
        return self.state_dir / "secrets" / f"{self.name}-rke2-token"

    @property
    def bootstrap_password_file(self) -> Path:
        if self.rancher.bootstrap_password_file is not None:
            return self.resolve(self.rancher.bootstrap_password_file)
        return self.state_dir / "secrets" / f"{self.name}-bootstrap-password"

    @property
    def health_path(self) -> str:
        return self.load_balancer.health.path or INGRESS_HEALTH_PATHS[self.ingress]

    @property
    def health_token_file(self) -> Path | None:
        token = self.load_balancer.health.token_file
        return self.resolve(token) if token is not None else None

    @property
    def readyz_requires_200(self) -> bool:
        """True when a 6443 check can tell ready from not ready (token or anonymous access).

        Without either, RKE2 answers 401 to the load balancer's anonymous `/readyz`, and the
        best a check can say is "apiserver up, readiness unknown" (rancher/rke2#7374).
        """
        return self.health_token_file is not None or bool(self.rke2.anonymous_health)

    @property
    def rancher_tls_external(self) -> bool:
        return self.rancher.tls_source == "external"

    @property
    def registration_url(self) -> str:
        """The fixed registration address every server but the first joins through."""
        return f"https://{self.hostname}:9345"
