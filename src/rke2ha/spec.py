"""The spec: one YAML file describing three RKE2 servers, a load balancer and a DNS record.

This module is the *shape* of the spec (pydantic v2 models): types, allowed values,
defaults, what each field does (`Field(description=...)`, model docstrings) and which
providers act on it (`used_by`), and the few defaults that depend on other fields (lab
addresses, the health path of the chosen ingress, Rancher's TLS mode at layer 7).
`docs/spec-reference.md` is generated from these models (`python -m rke2ha.specdoc`), so a
field's description is its documentation. Whether a well-formed spec is *sensible* (three
servers, the hostname inside the zone, ...) is decided by `rke2ha.rules`, which can explain
each finding with a fix and a source; pydantic errors here only say "this value cannot be
read as that type".

Unknown keys are errors everywhere (`extra="forbid"`): a misspelt key that is silently
ignored is how an operator ends up without the health check they thought they configured.
One `Spec` object flows from here to every component; nothing re-reads the YAML.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from rke2ha.addresses import check_address, split_hostport
from rke2ha.durations import parse_duration
from rke2ha.errors import UsageError

Duration = Annotated[float, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]
# true or false only: YAML already reads yes/no/on/off unquoted as booleans, and a quoted
# "yes" or "no" (a string) is more likely a mistake than an answer.
Flag = Annotated[bool, Field(strict=True)]
# Every address a config file, a zone or a command line is made from: an IP or an RFC 1123
# host name, so no value can carry a space or line break into what rke2ha renders.
HostAddress = Annotated[str, AfterValidator(check_address)]


def _check_interface(name: str) -> str:
    # Linux refuses interface names that are empty, "." or "..", 16 bytes or longer
    # (IFNAMSIZ), or hold '/', ':' or whitespace (dev_valid_name, net/core/dev.c).
    if (
        not 0 < len(name.encode()) < 16
        or name in (".", "..")
        or any(char in "/:" or char.isspace() or not char.isprintable() for char in name)
    ):
        raise ValueError(
            f"{name!r} is not a network interface name: 1-15 characters without '/', ':', "
            "spaces or control characters (e.g. eth0)"
        )
    return name


Interface = Annotated[str, AfterValidator(_check_interface)]


def _check_jump_host(text: str) -> str:
    # `[user@]host[:port]` (`[v6]:port`), read by `ssh.target.parse_jump`: its host is an
    # address like any other, its user a login name without spaces.
    user, _, hostport = text.rpartition("@")
    host = hostport
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":")
    elif hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
    else:
        port = ""
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{text!r}: the port must be 1-65535; write [user@]host[:port]")
    if any(char.isspace() or not char.isprintable() for char in user):
        raise ValueError(f"{text!r}: the user holds a space or control character")
    try:
        check_address(host)
    except ValueError as err:
        raise ValueError(f"{err}; write [user@]host[:port]") from None
    return text


JumpHost = Annotated[str, AfterValidator(_check_jump_host)]


def _check_tsig_key_name(name: str) -> str:
    # A domain name (RFC 8945 §4.2: the key name is an owner name), written into named.conf
    # between quotes and parsed by dnspython: labels of letters, digits, '-' and '_', 1-63
    # characters each, 253 in all (RFC 1035 §2.3.4), so no quote, brace or line break.
    labels = name.removesuffix(".").split(".")
    if (
        not name
        or len(name.removesuffix(".")) > 253
        or any(
            not 0 < len(label) < 64
            or not all(c.isascii() and (c.isalnum() or c in "-_") for c in label)
            for label in labels
        )
    ):
        raise ValueError(
            f"{name!r} is not a TSIG key name: dot-separated labels of letters, digits, '-' "
            "or '_' (1-63 characters each), e.g. rke2ha-key."
        )
    return name


TsigKeyName = Annotated[str, AfterValidator(_check_tsig_key_name)]


def _check_health_path(path: str | None) -> str | None:
    # The path goes into the engines' check lines (HAProxy `http-check send uri`): an
    # absolute path of printable characters without spaces.
    if path is not None and (
        not path.startswith("/") or any(char.isspace() or not char.isprintable() for char in path)
    ):
        raise ValueError(
            f"{path!r} is not an HTTP path: it starts with '/' and holds no spaces or "
            "control characters (e.g. /healthz)"
        )
    return path


# Names, and how a schema error says what they may hold (a regex means little to a reader).
SPEC_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
MEMBER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
PATTERN_WORDS = {
    SPEC_NAME_PATTERN: (
        "lowercase letters, digits and '-', starting with a letter, not ending with '-', "
        "2 to 32 characters (e.g. rancher-prod)"
    ),
    MEMBER_NAME_PATTERN: (
        "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 "
        "characters (e.g. node-1)"
    ),
}

LOOPBACK_ADMIN = "127.0.0.1:8404"


def _check_admin(text: str) -> str:
    # The admin endpoint can take nodes out of rotation and shows every node's state: it
    # listens on loopback only (127.0.0.0/8 or ::1); empty turns it off.
    if not text:
        return text
    parts = split_hostport(text)
    port = parts[1] if parts else ""
    if parts is None or not parts[0] or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT with a port 1-65535; e.g. {LOOPBACK_ADMIN}")
    host = parts[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{text!r}: the admin endpoint listens on a loopback address only (127.0.0.0/8 "
            f"or [::1]): it can take nodes out of rotation; e.g. {LOOPBACK_ADMIN}, or empty "
            "to turn it off"
        )
    return text


ProviderName = Literal["lab", "existing", "aws"]
PROVIDERS: tuple[ProviderName, ...] = ("lab", "existing", "aws")

# The four ports the tutorial and RKE2's HA docs put behind the load balancer:
# ingress HTTP and HTTPS, the Kubernetes API and the RKE2 supervisor (registration).
DEFAULT_LB_PORTS = (80, 443, 6443, 9345)
INGRESS_HEALTH_PATHS = {"nginx": "/healthz", "traefik": "/ping"}


def used_by(*providers: ProviderName, instead: str = "") -> JsonDict:
    """`json_schema_extra` of a field only `providers` act on; the others ignore it.

    A field without it is used by every provider. `instead` tells the user of another
    provider what to set in its place. The spec reference and rule `provider.ignored` read
    this (`rke2ha.specfields`), so it is the one place that says who uses a field.
    """
    extra: JsonDict = {"providers": list(providers)}
    if instead:
        extra["instead"] = instead
    return extra


# What each provider family acts on, named once (see `used_by`).
_ON_MACHINES_WE_RUN = used_by("lab", "existing")  # the built-in or rendered load balancer
_RENDERED_FOR_SERVERS = used_by("existing", "aws")  # RKE2/Rancher files for real servers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_default=True)


_ON_NODES_OVER_SSH = used_by("existing")  # rke2ha reaches the servers (pre-flight)


class NodeSsh(_Strict):
    """How rke2ha reaches one node over SSH; every field left out comes from the top `ssh:`."""

    host: HostAddress | None = Field(
        None,
        description="Address or DNS name sshd answers on. Default: the node's `address`.",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    user: str | None = Field(
        None, description="Login user on this node.", json_schema_extra=_ON_NODES_OVER_SSH
    )
    port: Port | None = Field(
        None, description="sshd's port.", json_schema_extra=_ON_NODES_OVER_SSH
    )
    identity_file: Path | None = Field(
        None, description="Private key for this node.", json_schema_extra=_ON_NODES_OVER_SSH
    )
    jump_host: JumpHost | None = Field(
        None,
        description="Bastion for this node (`[user@]host[:port]`).",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )


class Ssh(_Strict):
    """How rke2ha reaches the machines (`rke2ha preflight`; with it `plan`/`up` of existing
    run the pre-flight first). Without this block rke2ha never logs in to a node."""

    user: str = Field(
        "root",
        description=(
            "Login user. root runs commands as is; any other user runs them with `sudo -n` "
            "(passwordless sudo required; a password prompt is reported, never answered)."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    port: Port = Field(22, description="sshd's port.", json_schema_extra=_ON_NODES_OVER_SSH)
    identity_file: Path | None = Field(
        None,
        description="Private key to log in with. Default: the keys of the SSH agent.",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    known_hosts: Path | None = Field(
        None,
        description=(
            "Host keys are verified against this file: an unknown key is refused with its "
            "fingerprint (`--accept-new-host-keys` records it here), a changed key always is. "
            "Default: `~/.ssh/known_hosts`."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    jump_host: JumpHost | None = Field(
        None,
        description="Bastion every connection goes through (`[user@]host[:port]`).",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    connect_timeout: Duration = Field(
        10.0,
        description="How long connecting and logging in to one machine may take.",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    command_timeout: Duration = Field(
        30.0,
        description="How long one command on a machine may run before it counts as failed.",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )


class Node(_Strict):
    """One RKE2 server node."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=MEMBER_NAME_PATTERN)] = Field(
        description="The node's name: RKE2's `node-name`, and how rke2ha names it."
    )
    address: HostAddress | None = Field(
        None,
        description=(
            "IP or DNS name the load balancer forwards to. Required for existing; the lab "
            "assigns `.11` upwards in `lab.subnet`; aws assigns it (it must be absent)."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    zone: str | None = Field(
        None,
        description=(
            "Failure zone (rack, availability zone); three nodes in three zones survive the "
            "loss of one (rule `nodes.zones`). For aws, the availability zone of the instance."
        ),
    )
    region: str | None = Field(
        None, description="The node's region; it must be the spec's `region` (rule `nodes.region`)."
    )
    ssh: NodeSsh | None = Field(
        None,
        description="SSH settings of this node, over the top `ssh:` block.",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )


class Health(_Strict):
    """Active health checks from the load balancer to every node (HAProxy's inter/rise/fall)."""

    interval: Duration = Field(1.0, description="Time between two checks of a node's port.")
    timeout: Duration = Field(1.0, description="How long one check may take before it fails.")
    rise: Annotated[int, Field(ge=1, le=100)] = Field(
        2, description="Passing checks in a row before a node is back in rotation."
    )
    fall: Annotated[int, Field(ge=1, le=100)] = Field(
        2, description="Failing checks in a row before a node leaves rotation."
    )
    jitter: Annotated[float, Field(ge=0, le=0.5)] = Field(
        0.1,
        description=(
            "Fraction of `interval` by which each check moves at random, so the checks of "
            "many nodes do not fire together."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    path: Annotated[str | None, AfterValidator(_check_health_path)] = Field(
        None,
        description=(
            "Ingress health endpoint checked on node port 80 (catch-all server: no Rancher "
            "Host) for ports 80 and 443; only 200 passes. Default: from `ingress` (nginx "
            "`/healthz`, traefik `/ping`: 404 or 200)."
        ),
    )
    token_file: Path | None = Field(
        None,
        description=(
            "File holding a bearer token sent with the 6443 `/readyz` check; with it only "
            "200 counts as up. An NLB cannot send one."
        ),
        json_schema_extra=used_by(
            "lab", "existing", instead="use rke2.anonymous_health (the default for aws)"
        ),
    )
    readyz_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        None,
        description=(
            "Statuses of the 6443 `/readyz` check that count as up. Default: [200] when a "
            "token or `rke2.anonymous_health` lets the check see readiness, else [200, 401] "
            "(RKE2 answers 401 to anonymous callers, rancher/rke2#7374); [200] without "
            "either marks every server down."
        ),
    )


class TlsFiles(_Strict):
    """PEM certificate chain and key for the Rancher hostname (layer 7 only)."""

    cert: Path = Field(description="PEM certificate chain for `hostname`, leaf first.")
    key: Path = Field(description="PEM private key of that certificate (mode 0600).")


class LoadBalancerPair(_Strict):
    """Two load balancer hosts sharing `load_balancer.address` as a VRRP virtual IP."""

    primary: HostAddress = Field(description="Host that holds the virtual IP while it is up.")
    standby: HostAddress = Field(
        description="Host that takes the virtual IP over when the primary fails."
    )
    interface: Interface = Field("eth0", description="Network interface keepalived puts the IP on.")
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] = Field(
        51, description="VRRP router id; unique among the VRRP routers of the network segment."
    )


class LoadBalancerHost(_Strict):
    """A machine the load balancer engine runs on as a systemd service (reached over SSH)."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=MEMBER_NAME_PATTERN)] = Field(
        description="The host's name, as rke2ha reports and records it."
    )
    address: HostAddress = Field(
        description=(
            "IP the engine binds (with one host, `load_balancer.address` must be this) and, "
            "unless `ssh.host` says otherwise, the address rke2ha logs in to."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    ssh: NodeSsh | None = Field(
        None,
        description="SSH settings of this host, over the top `ssh:` block.",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )


def _two_hosts_at_most(hosts: list[LoadBalancerHost]) -> list[LoadBalancerHost]:
    # Two hosts share `address` as a keepalived virtual IP; a third would need a VRRP
    # group rke2ha does not set up (one holder, one standby is what it tests).
    if len(hosts) > 2:
        raise ValueError(
            f"a third load balancer host ({hosts[2].name}) is not supported: two hosts share "
            "load_balancer.address as a keepalived virtual IP; list one or two hosts"
        )
    names = [host.name for host in hosts]
    if len(set(names)) != len(names):
        raise ValueError(f"load balancer host names must differ: {', '.join(names)}")
    return hosts


class LoadBalancerVrrp(_Strict):
    """keepalived between two `load_balancer.hosts` sharing `address` as a virtual IP."""

    auth_file: Path = Field(
        description=(
            "File (mode 0600) holding the VRRP password both hosts authenticate their "
            "adverts with: 1-8 characters (keepalived's PASS authentication uses 8)."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    interface: Interface = Field("eth0", description="Network interface on both hosts for the IP.")
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] = Field(
        51, description="VRRP router id; unique among the VRRP routers of the network segment."
    )


class LoadBalancer(_Strict):
    """The load balancer in front of the nodes: what it listens on, checks and forwards."""

    layer: Literal[4, 7] = Field(
        4,
        description=(
            "4: TCP passthrough, TLS ends at the nodes' ingress (recommended). 7: TLS ends at "
            "the load balancer (needs `tls`) and Rancher runs with tls=external."
        ),
    )
    engine: Literal["builtin", "haproxy", "nginx", "aws-nlb"] = Field(
        "builtin",
        description=(
            "What runs it: `builtin` (rke2ha's own), `haproxy` or `nginx` (configs rendered "
            "and, for existing, run by rke2ha), `aws-nlb` (provider aws only)."
        ),
    )
    address: HostAddress | None = Field(
        None,
        description=(
            "What clients reach: an IP (record A) or a hostname (record CNAME); every server "
            "gets it as a `tls-san`. Required for existing; the lab uses `.10` of "
            "`lab.subnet`; aws assigns the NLB's name."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    extra_addresses: list[HostAddress] = Field(
        default_factory=list,
        description=(
            "More load balancer addresses published beside `address` (several LB hosts "
            "without a virtual IP); the built-in DNS server serves only those whose health "
            "endpoint answers."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    ports: list[Port] = Field(
        default_factory=lambda: list(DEFAULT_LB_PORTS),
        description=(
            "Ports forwarded to the same port on every node: 80 and 443 (ingress), 6443 "
            "(Kubernetes API), 9345 (RKE2 supervisor, where servers join)."
        ),
    )
    health: Health = Field(default_factory=Health, description="Active health checks.")
    tls: TlsFiles | None = Field(
        None,
        description="Certificate and key the load balancer ends TLS with at layer 7.",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    pair: LoadBalancerPair | None = Field(
        None,
        description=(
            "Two load balancer hosts sharing `address` as a VRRP virtual IP (`render` writes "
            "their keepalived configs)."
        ),
        json_schema_extra=used_by("existing"),
    )
    hosts: Annotated[list[LoadBalancerHost], AfterValidator(_two_hosts_at_most)] = Field(
        default_factory=list,
        description=(
            "Machines the engine runs on as an enabled systemd service, installed and "
            "configured over SSH (needs `ssh:`; engine haproxy). Empty: the engine runs on "
            "the machine rke2ha runs on. Two hosts share `address` as a keepalived "
            "virtual IP (needs `vrrp`)."
        ),
        json_schema_extra=used_by("existing"),
    )
    vrrp: LoadBalancerVrrp | None = Field(
        None,
        description="keepalived settings for two `hosts` (required with two).",
        json_schema_extra=used_by("existing"),
    )
    balance: Literal["leastconn", "roundrobin"] = Field(
        "leastconn",
        description="How a node is picked for a connection (a request at layer 7).",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    connect_timeout: Duration = Field(
        5.0,
        description="How long a connect to a node may take before the next node is tried.",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    idle_timeout: Duration = Field(
        3600.0,
        description=(
            "Layer 4: a connection silent both ways this long is closed. Rancher keeps "
            "websockets and kubectl watches open for hours."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    http_timeout: Duration = Field(
        1800.0,
        description="Layer 7: read and write timeout towards clients and nodes (Rancher's "
        "guide asks for 1800 s).",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    drain_timeout: Duration = Field(
        30.0,
        description=(
            "On reload or stop, how long open connections (to a removed node, or through a "
            "stopping load balancer) may go on."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        10_000,
        description="Client connections at once; above it new clients wait in the backlog.",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    retries: Annotated[int, Field(ge=0, le=10)] = Field(
        2,
        description=(
            "Other nodes a refused or timed-out connect (at layer 7: an idempotent request) "
            "is tried on."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    send_proxy: Flag = Field(
        False,
        description="Layer 4: send PROXY protocol v2 to the nodes (they must expect it).",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    affinity: Literal["none", "cookie"] = Field(
        "none",
        description="Layer 7: `cookie` pins a client to a node with an HMAC cookie.",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    redirect_code: Literal[301, 308] = Field(
        308,
        description="Layer 7: status of port 80's redirect to https (308 keeps the method).",
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    acme_passthrough: Flag = Field(
        False,
        description=(
            "Layer 7: send port 80's `/.well-known/acme-challenge/` to the nodes instead of "
            "redirecting, for HTTP-01 challenges answered there."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    admin: Annotated[str, AfterValidator(_check_admin)] = Field(
        LOOPBACK_ADMIN,
        description=(
            "HOST:PORT of the built-in load balancer's admin endpoint (`/metrics`, `/status`, "
            "stats page), and of HAProxy's stats in rendered configs (loopback only). The lab "
            "puts it on the load balancer's own address (port 8404) and, like every port, "
            "adds the port offset."
        ),
        json_schema_extra=_ON_MACHINES_WE_RUN,
    )
    shared_with: list[str] = Field(
        default_factory=list,
        description=(
            "Other hostnames routed through this load balancer; anything here draws the "
            "`lb.dedicated` warning (the tutorial asks for a load balancer for Rancher alone)."
        ),
    )

    @property
    def addresses(self) -> list[str]:
        """Every address clients may be sent to: `address` first, then `extra_addresses`."""
        return ([self.address] if self.address else []) + list(self.extra_addresses)

    def admin_listen(self, offset: int = 0) -> tuple[str, int] | None:
        """Where the admin endpoint listens: `admin` with `offset` added to its port.

        A port offset moves every port of the spec, the admin's too, so two labs (or two
        `lb serve --port-offset`) never share one. None when `admin` is empty (off).
        """
        if not self.admin:
            return None
        host, _, port = self.admin.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) + offset < 65536:
            raise UsageError(
                f"load_balancer.admin {self.admin!r}: expected HOST:PORT with a port that is "
                f"1-65535 after the port offset {offset}"
            )
        return host.strip("[]"), int(port) + offset


class Rke2Airgap(_Strict):
    """Where the air-gap artifacts of the pinned RKE2 release are on this machine."""

    artifacts: Path = Field(
        description=(
            "Folder holding `install.sh`, `rke2.linux-amd64.tar.gz`, "
            "`rke2-images.linux-amd64.tar.zst` and `sha256sum-amd64.txt`, as RKE2's air-gap "
            "docs name them; every file is checked against the sums before it is uploaded."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )


class Rke2(_Strict):
    """RKE2 on the server nodes."""

    install: Literal["none", "online", "airgap"] = Field(
        "none",
        description=(
            "Who installs RKE2 on the nodes: `none` (you; rke2ha never touches RKE2), "
            "`online` (rke2ha runs install.sh with the pinned version, the nodes download "
            "it), `airgap` (rke2ha uploads `rke2.airgap.artifacts` and installs from them). "
            "Servers are started one at a time, the first until it is ready."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    airgap: Rke2Airgap | None = Field(
        None,
        description=(
            "The artifacts of `rke2.install: airgap`. With `online`, only `install.sh` is taken "
            "from that folder when it holds one (else the nodes fetch it from get.rke2.io)."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Extra RKE2 server config keys (config.yaml), the same on every server. The keys "
            "rke2ha sets itself (token, server, tls-san, node-name, cni) are refused here."
        ),
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )

    anonymous_health: Flag | None = Field(
        None,
        description=(
            "Open `/livez` and `/readyz` (only) to anonymous callers, so the load balancer's "
            "checks see real readiness instead of 401. Default: true for aws (an NLB cannot "
            "send credentials), false otherwise."
        ),
    )
    token_file: Path | None = Field(
        None,
        description=(
            "File with the cluster join token (mode 0600). Default: "
            "`.rke2ha/secrets/<name>-rke2-token` beside the spec, made once and reused."
        ),
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )
    version: str | None = Field(
        None,
        description=(
            "RKE2 release (`v1.33.6+rke2r1`). existing: the version `rke2.install` installs "
            "(required unless install is none). lab: what the node emulators report (6443 "
            "`/version`). aws installs `aws.rke2_version`."
        ),
        json_schema_extra=used_by(
            "lab",
            "existing",
            instead="pin the version aws installs with aws.rke2_version",
        ),
    )
    cni: Literal["canal", "calico", "cilium", "flannel", "none"] = Field(
        "canal",
        description="The CNI RKE2 deploys (`cni` in config.yaml); aws opens its ports.",
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )


class Rfc2136(_Strict):
    """A primary DNS server that takes TSIG-signed dynamic updates (RFC 2136)."""

    server: HostAddress = Field(description="Address of the primary server for `dns.zone`.")
    port: Port = Field(53, description="Its DNS port.")
    key_name: TsigKeyName = Field(
        description="TSIG key name as the server knows it (ends with a dot)."
    )
    key_file: Path = Field(description="File holding the base64 TSIG secret alone (mode 0600).")
    algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = Field(
        "hmac-sha256", description="TSIG algorithm of the key."
    )


class Route53(_Strict):
    """An AWS Route 53 hosted zone."""

    hosted_zone_id: str | None = Field(
        None, description="The hosted zone to publish in. Default: the zone named `dns.zone`."
    )


class TransferKey(_Strict):
    """The TSIG key secondaries sign zone transfers and NOTIFY answers with (RFC 8945)."""

    name: TsigKeyName = Field(
        description="TSIG key name as the secondaries know it (ends with a dot)."
    )
    algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = Field(
        "hmac-sha256", description="TSIG algorithm of the key."
    )
    key_file: Path = Field(description="File holding the base64 TSIG secret alone (mode 0600).")


class BuiltinDns(_Strict):
    """rke2ha's own authoritative DNS server for the zone (`rke2ha dns serve`)."""

    listen: str | None = Field(
        None, description="HOST:PORT it listens on; the lab uses `.53` of `lab.subnet`, port 53."
    )
    nameserver: str | None = Field(
        None, description="NS name served for the zone. Default: `ns1.<zone>`."
    )
    axfr_allow: list[str] = Field(
        default_factory=list,
        description=(
            "Client IPs or networks allowed to transfer the zone (AXFR/IXFR, TCP). With "
            "`transfer_key` and an empty list, any client holding the key may transfer."
        ),
    )
    transfer_key: TransferKey | None = Field(
        None,
        description=(
            "When set, zone transfers must be TSIG-signed with this key, answers to signed "
            "queries are signed, and NOTIFY messages are signed."
        ),
    )
    notify: list[str] = Field(
        default_factory=list,
        description=(
            "Secondaries (IP[:PORT], port 53 by default) sent a NOTIFY (RFC 1996) whenever "
            "the served zone changes: start, SIGHUP, health."
        ),
    )


class Dns(_Strict):
    """The DNS record that becomes Rancher's URL: `hostname` to the load balancer."""

    provider: Literal["builtin", "rfc2136", "route53", "manual"] = Field(
        "builtin",
        description=(
            "Who publishes the record: `builtin` (rke2ha's server), `rfc2136` (dynamic "
            "update), `route53`, `manual` (rke2ha prints the records for you to add)."
        ),
    )
    zone: str = Field(description="The DNS zone `hostname` is in.")
    record: Literal["A", "CNAME"] = Field(
        "A",
        description=(
            "`A` to the load balancer's IP (for aws: an alias to the NLB), `CNAME` to `target`."
        ),
    )
    ttl: Annotated[int, Field(ge=1, le=604_800)] = Field(
        60, description="TTL of the record, seconds."
    )
    target: HostAddress | None = Field(
        None, description="CNAME target. Default: `load_balancer.address`."
    )
    builtin: BuiltinDns = Field(
        default_factory=BuiltinDns, description="Settings of dns.provider builtin."
    )
    rfc2136: Rfc2136 | None = Field(None, description="Settings of dns.provider rfc2136.")
    route53: Route53 | None = Field(None, description="Settings of dns.provider route53.")

    @field_validator("builtin")
    @classmethod
    def _builtin_addresses(cls, builtin: BuiltinDns) -> BuiltinDns:
        # Checked here rather than on BuiltinDns's fields, with the same address check as
        # every other address of the spec; the message names the field.
        if builtin.listen:
            from rke2ha.dns.hostport import split_host_port

            try:
                check_address(split_host_port(builtin.listen, 53, lowest=0)[0])
            except ValueError as err:
                raise ValueError(f"listen: {err}; e.g. 10.0.0.53:53") from None
        for index, client in enumerate(builtin.axfr_allow):
            # Matched as networks (rke2ha.dns.zone); a name would never match a client.
            try:
                ipaddress.ip_network(client, strict=False)
            except ValueError:
                raise ValueError(
                    f"axfr_allow[{index}]: {client!r} is not an IP address or network "
                    "(e.g. 10.0.0.54 or 10.0.0.0/24)"
                ) from None
        return builtin


class Rancher(_Strict):
    """Rancher's Helm install (`rke2ha render`: rancher/values.yaml and install.sh)."""

    install: Flag = Field(
        False,
        description=(
            "existing with `rke2.install`: `up` installs cert-manager (when `tls_source` needs "
            "it) and Rancher as RKE2 HelmChart manifests on the first server, then waits for "
            "`https://<hostname>/ping`."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    chart_artifact: Path | None = Field(
        None,
        description=(
            "Air-gap: the Rancher chart archive (`rancher-<version>.tgz`), handed to RKE2's "
            "helm-controller as `chartContent` instead of a repository download."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    cert_manager_chart_artifact: Path | None = Field(
        None,
        description="Air-gap: the cert-manager chart archive (`cert-manager-<version>.tgz`).",
        json_schema_extra=_ON_NODES_OVER_SSH,
    )

    replicas: Annotated[int, Field(ge=1, le=15)] = Field(
        3,
        description="Rancher replicas; one per server node.",
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )
    tls_source: Literal["rancher", "letsEncrypt", "secret", "external"] | None = Field(
        None,
        description=(
            "Who issues Rancher's certificate: `rancher` (its own CA), `letsEncrypt`, `secret` "
            "(yours), `external` (TLS ends at the load balancer). Default: external at layer "
            "7, rancher otherwise."
        ),
    )
    version: str | None = Field(
        None,
        description="Rancher chart version (`helm --version`). Default: the newest.",
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )
    letsencrypt_email: str | None = Field(
        None,
        description="Email of the ACME account; required with tls_source letsEncrypt.",
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )
    bootstrap_password_file: Path | None = Field(
        None,
        description=(
            "File with the first admin password, read when install.sh runs. Default: "
            "`.rke2ha/secrets/<name>-bootstrap-password`, made once."
        ),
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )
    cert_manager_version: str = Field(
        "v1.16.2",
        description="cert-manager chart version, installed when Rancher issues certificates.",
        json_schema_extra=_RENDERED_FOR_SERVERS,
    )


class Aws(_Strict):
    """EC2 instances, an NLB and Route 53 (provider aws)."""

    region: str = Field(description="AWS region of everything rke2ha makes.")
    instance_type: str = Field("m5.xlarge", description="EC2 instance type of the servers.")
    ami: str = Field(description="AMI of the servers (a Linux that RKE2 supports).")
    vpc_id: str | None = Field(
        None, description="VPC to create in. Default: the region's default VPC."
    )
    allowed_cidrs: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description=(
            "Networks that may reach the load balancer's ports; 0.0.0.0/0 opens 6443 and "
            "9345 to the internet (a `provider` warning)."
        ),
    )
    rke2_version: str = Field(description="RKE2 release cloud-init installs on the servers.")
    scheme: Literal["internet-facing", "internal"] = Field(
        "internet-facing", description="Whether the NLB has public addresses."
    )
    key_name: str | None = Field(None, description="EC2 key pair for SSH to the servers.")
    volume_size_gb: Annotated[int, Field(ge=20, le=16_384)] = Field(
        100, description="Root volume of each server, GiB."
    )


class Lab(_Strict):
    """The whole topology on this machine, on loopback addresses only (provider lab)."""

    subnet: str = Field(
        "127.0.10.0/24",
        description=(
            "Loopback subnet (/26 or larger inside 127.0.0.0/8): `.10` load balancer, `.11` "
            "upwards the nodes, `.53` DNS."
        ),
    )
    port_offset: Annotated[int, Field(ge=0, le=60_000)] = Field(
        10_000, description="Added to every port when not run as root (80 becomes 10080)."
    )

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
LAB_ADMIN_PORT = 8404


def _explicit_paths(model: BaseModel, prefix: str = "") -> Iterator[str]:
    """Spec paths of the fields the YAML gave (`rke2.version`, `nodes[1].address`)."""
    for name in sorted(model.model_fields_set):
        path = f"{prefix}.{name}" if prefix else name
        yield path
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _explicit_paths(value, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _explicit_paths(item, f"{path}[{index}]")


class Spec(_Strict):
    """The whole spec: one file drives every command."""

    name: Annotated[str, Field(pattern=SPEC_NAME_PATTERN)] = Field(
        description=(
            "Name of this installation (lowercase, digits, `-`; 2 to 32 characters): it "
            "names secret files, AWS resources and the DNS ownership record."
        )
    )
    hostname: str = Field(
        description=(
            "Rancher's URL (`https://<hostname>/`): the DNS record, every server's `tls-san`, "
            "the name every check asks for. Final once Rancher is installed."
        )
    )
    provider: ProviderName = Field(
        description=(
            "Where the nodes come from: `lab` (all on this machine, loopback only), "
            "`existing` (servers you run; rke2ha runs the load balancer and publishes DNS), "
            "`aws` (EC2 instances, an NLB and Route 53)."
        )
    )
    region: str | None = Field(
        None,
        description=(
            "The region all nodes are in (rule `nodes.region`). Default for aws: `aws.region`."
        ),
    )
    ingress: Literal["nginx", "traefik"] = Field(
        "nginx",
        description=(
            "The nodes' ingress controller; it decides the health path on node port 80 "
            "(nginx `/healthz`, traefik `/ping`)."
        ),
    )
    nodes: list[Node] = Field(description="The RKE2 server nodes: three for HA (`nodes.count`).")
    load_balancer: LoadBalancer = Field(
        default_factory=LoadBalancer, description="The load balancer in front of the nodes."
    )
    rke2: Rke2 = Field(default_factory=Rke2, description="RKE2 on the server nodes.")
    dns: Dns = Field(description="The DNS record that becomes Rancher's URL.")
    rancher: Rancher = Field(default_factory=Rancher, description="Rancher's Helm install.")
    ssh: Ssh | None = Field(
        None,
        description=(
            "How rke2ha reaches the nodes over SSH (`rke2ha preflight`). Without it nothing "
            "touches a node."
        ),
        json_schema_extra=_ON_NODES_OVER_SSH,
    )
    aws: Aws | None = Field(
        None, description="Settings of provider aws.", json_schema_extra=used_by("aws")
    )
    lab: Lab | None = Field(
        None, description="Settings of provider lab.", json_schema_extra=used_by("lab")
    )

    _source_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source_file: Path | None = PrivateAttr(default=None)  # set by `specfile.load_spec`
    _explicit: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Spec:
        """Defaults that depend on other fields; everything else is a plain field default."""
        # Before filling: pydantic counts a field assigned here as set by the user.
        self._explicit = frozenset(_explicit_paths(self))
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
        if "load_balancer.admin" not in self._explicit:
            # The lab's admin endpoint is on its own address, so two labs on two subnets
            # never share one (127.0.0.1:8404 would be everybody's).
            self.load_balancer.admin = f"{self.load_balancer.address}:{LAB_ADMIN_PORT}"
        for index, node in enumerate(self.nodes):
            if node.address is None:
                node.address = lab.host(LAB_FIRST_NODE_HOST + index)
        if self.dns.builtin.listen is None:
            self.dns.builtin.listen = f"{lab.host(LAB_DNS_HOST)}:53"

    # ---- derived values every component shares -------------------------------------------

    @property
    def explicit_paths(self) -> frozenset[str]:
        """Paths of the fields the spec file gave, before any default was filled in."""
        return self._explicit

    @property
    def source_file(self) -> Path | None:
        """The spec file this was read from (absolute); None when the spec was built in
        code. Printed commands name it (shortened) instead of a placeholder; the state
        records it as the spec it belongs to."""
        return self._source_file

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
