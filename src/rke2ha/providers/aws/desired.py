"""The spec as AWS resources: names, security rules, health checks, node placement. Pure.

Every value here is derived from the spec and the discovered network (VPC, subnets per
zone); cloud ids of our own resources never appear, because they are unknown before apply
and plans compare in spec terms. `apply` resolves ids from dependencies at run time.

Health checks follow `rke2ha.healthplan` within what an NLB allows (interval 5-300 s,
timeout 2-120 s, thresholds 2-10, matcher codes 200-599): 80/443 -> HTTP <ingress path>
on node port 80 with the statuses of `healthplan.ingress_probe` (an NLB check carries no
Rancher hostname, so it reaches the ingress's catch-all server, as the plan wants);
6443 -> HTTPS /readyz; 9345 -> the same /readyz on port 6443, because 9345 answers before
the node has joined. An NLB cannot send credentials, so /readyz
counts 200 only when `rke2.anonymous_health` opens it, else 200 and 401 (readiness then
unknown, said in the plan).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from rke2ha.errors import InvalidError
from rke2ha.healthplan import (
    APISERVER_PORT,
    INGRESS_PORT,
    ingress_probe,
    port_health,
    readyz_probe,
)
from rke2ha.plan import Desired
from rke2ha.spec import Spec

CLUSTER_TAG = "rke2ha:cluster"
OWNER_TAG = "rke2ha:owner"
ADDRESS_TAG = "rke2ha:address"

# Ports between servers (RKE2's inbound rules for server nodes).
SERVER_PORTS: tuple[tuple[str, int, int, str], ...] = (
    ("tcp", 9345, 9345, "rke2 supervisor"),
    ("tcp", 6443, 6443, "kubernetes api"),
    ("tcp", 10250, 10250, "kubelet"),
    ("tcp", 2379, 2381, "etcd client, peer, metrics"),
    ("tcp", 30000, 32767, "nodeports"),
)
CNI_PORTS: dict[str, tuple[tuple[str, int, int, str], ...]] = {
    "canal": (("udp", 8472, 8472, "vxlan"), ("tcp", 9099, 9099, "canal health")),
    "flannel": (("udp", 8472, 8472, "vxlan"),),
    "calico": (
        ("tcp", 179, 179, "bgp"),
        ("udp", 4789, 4789, "vxlan"),
        ("tcp", 5473, 5473, "typha"),
        ("tcp", 9098, 9099, "calico health"),
    ),
    "cilium": (("udp", 8472, 8472, "vxlan"), ("tcp", 4240, 4240, "cilium health")),
    "none": (),
}
# Kind -> creation rank; deletion goes from the highest rank down.
KIND_RANK = {
    "ssm_parameter": 0,
    "iam_role": 1,
    "iam_instance_profile": 2,
    "security_group": 3,
    "load_balancer": 4,
    "target_group": 5,
    "instance": 6,
    "targets": 7,
    "listener": 8,
    "dns_record": 9,
}

NLB_INTERVAL = (5, 300)
NLB_TIMEOUT = (2, 120)
NLB_THRESHOLD = (2, 10)


@dataclass(frozen=True)
class Subnet:
    id: str
    zone: str
    default_for_az: bool = False


@dataclass(frozen=True)
class Network:
    """The VPC the cluster lives in and its subnets (discovered by `facts`)."""

    vpc_id: str
    cidr: str
    subnets: tuple[Subnet, ...]


@dataclass(frozen=True)
class Names:
    """Every AWS name derived from `spec.name` (within each service's length limits)."""

    cluster: str

    @property
    def short(self) -> str:
        # ELB names are at most 32 characters: keep room for "-tg9345".
        if len(self.cluster) <= 22:
            return self.cluster
        digest = hashlib.sha256(self.cluster.encode()).hexdigest()[:4]
        return f"{self.cluster[:17]}-{digest}"

    @property
    def token_parameter(self) -> str:
        return f"/rke2ha/{self.cluster}/rke2-token"

    @property
    def role(self) -> str:
        return f"rke2ha-{self.cluster}-node"

    @property
    def profile(self) -> str:
        return f"rke2ha-{self.cluster}-node"

    @property
    def security_group(self) -> str:
        return f"rke2ha-{self.cluster}-nodes"

    @property
    def load_balancer(self) -> str:
        return f"{self.short}-nlb"

    def target_group(self, port: int) -> str:
        return f"{self.short}-tg{port}"

    def instance(self, node: str) -> str:
        return f"{self.cluster}-{node}"


def tags(spec: Spec, owner: str, address: str) -> dict[str, str]:
    """The tags every resource carries: cluster, owner, and its plan address."""
    return {CLUSTER_TAG: spec.name, OWNER_TAG: owner, ADDRESS_TAG: address}


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


@dataclass(frozen=True)
class HealthCheck:
    protocol: str
    port: int
    path: str
    matcher: str
    interval: int
    timeout: int
    healthy: int
    unhealthy: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def readyz_matcher(spec: Spec) -> str:
    """Status codes the NLB counts as up for /readyz (it cannot send a bearer token)."""
    if spec.load_balancer.health.readyz_status is not None:
        statuses = readyz_probe(spec).ok_statuses
    else:
        statuses = (200,) if spec.rke2.anonymous_health else (200, 401)
    return ",".join(str(s) for s in statuses)


def health_check(spec: Spec, port: int) -> HealthCheck:
    """The NLB health check of the target group for load balancer `port`."""
    health = spec.load_balancer.health
    interval = _clamp(math.ceil(health.interval), NLB_INTERVAL)
    timeout = _clamp(math.ceil(health.timeout), NLB_TIMEOUT)
    timeout = min(timeout, interval - 1)
    common = {
        "interval": interval,
        "timeout": timeout,
        "healthy": _clamp(health.rise, NLB_THRESHOLD),
        "unhealthy": _clamp(health.fall, NLB_THRESHOLD),
    }
    if port in (80, 443):
        probe = ingress_probe(spec)
        matcher = ",".join(str(s) for s in probe.ok_statuses)
        return HealthCheck("HTTP", INGRESS_PORT, probe.path, matcher, **common)
    if port in (APISERVER_PORT, 9345):
        return HealthCheck("HTTPS", APISERVER_PORT, "/readyz", readyz_matcher(spec), **common)
    rule = port_health(spec, port)
    return HealthCheck("TCP", rule.backend_port, "", "", **common)


def health_notes(spec: Spec) -> list[str]:
    """What the person reading the plan should know about the health checks."""
    notes: list[str] = []
    health = spec.load_balancer.health
    check = health_check(spec, 6443)
    if check.interval != health.interval:
        notes.append(
            f"load_balancer.health.interval {health.interval:g}s -> {check.interval}s "
            f"(NLB allows {NLB_INTERVAL[0]}-{NLB_INTERVAL[1]} s)"
        )
    if check.timeout != health.timeout:
        notes.append(
            f"load_balancer.health.timeout {health.timeout:g}s -> {check.timeout}s "
            f"(NLB allows {NLB_TIMEOUT[0]}-{NLB_TIMEOUT[1]} s, below the interval)"
        )
    if "401" in check.matcher:
        notes.append(
            "rke2.anonymous_health is off: the NLB cannot send credentials, so its /readyz "
            "checks accept 401 and readiness is unknown (apiserver up is all they prove)"
        )
    return notes


def place_nodes(spec: Spec, network: Network) -> dict[str, Subnet]:
    """A subnet for each node, each in a different availability zone."""
    by_zone: dict[str, Subnet] = {}
    for subnet in sorted(network.subnets, key=lambda s: (not s.default_for_az, s.id)):
        by_zone.setdefault(subnet.zone, subnet)
    if len(by_zone) < len(spec.nodes):
        raise InvalidError(
            f"VPC {network.vpc_id} has subnets in {len(by_zone)} availability zone(s) "
            f"({', '.join(sorted(by_zone)) or 'none'}) but the spec has {len(spec.nodes)} "
            "nodes, one per zone; add subnets in more zones or set aws.vpc_id to another VPC"
        )
    placement: dict[str, Subnet] = {}
    taken: set[str] = set()
    for node in spec.nodes:
        if node.zone is not None:
            if node.zone not in by_zone:
                raise InvalidError(
                    f"nodes[{node.name}].zone: no subnet in {node.zone} in VPC "
                    f"{network.vpc_id} (zones with subnets: {', '.join(sorted(by_zone))})"
                )
            if node.zone in taken:
                raise InvalidError(
                    f"nodes[{node.name}].zone: {node.zone} is used by another node; "
                    "put each server in a different zone"
                )
            placement[node.name] = by_zone[node.zone]
            taken.add(node.zone)
    free = [z for z in sorted(by_zone) if z not in taken]
    for node in spec.nodes:
        if node.name not in placement:
            zone = free.pop(0)
            placement[node.name] = by_zone[zone]
            taken.add(zone)
    return placement


def ingress_rules(spec: Spec, network: Network) -> list[str]:
    """The security group's ingress rules as sorted strings (`tcp 80-80 from 0.0.0.0/0`)."""
    assert spec.aws is not None
    rules: set[str] = set()
    for proto, low, high, _why in (*SERVER_PORTS, *CNI_PORTS[spec.rke2.cni]):
        rules.add(f"{proto} {low}-{high} from self")
    for cidr in spec.aws.allowed_cidrs:
        for port in spec.load_balancer.ports:
            rules.add(f"tcp {port}-{port} from {cidr}")
    # NLB health checks (and traffic with client IP preservation off) come from the
    # NLB's own addresses inside the VPC.
    for port in sorted({*spec.load_balancer.ports, INGRESS_PORT, APISERVER_PORT}):
        rules.add(f"tcp {port}-{port} from {network.cidr}")
    return sorted(rules)


def desired_resources(spec: Spec, network: Network) -> list[Desired]:
    """Every resource `provider: aws` makes for the spec, in creation order."""
    aws = spec.aws
    if aws is None:
        raise InvalidError(
            "provider is aws but the spec has no aws: block; "
            "add aws.region, aws.ami and aws.rke2_version"
        )
    names = Names(spec.name)
    placement = place_nodes(spec, network)
    ports = list(spec.load_balancer.ports)
    nodes = [n.name for n in spec.nodes]
    out: list[Desired] = [
        Desired(
            "ssm_parameter.rke2_token",
            "ssm_parameter",
            {"name": names.token_parameter, "type": "SecureString"},
            replace_on=frozenset({"name", "type"}),
        ),
        Desired(
            "iam_role.node",
            "iam_role",
            {"name": names.role, "trusts": "ec2.amazonaws.com", "reads": [names.token_parameter]},
            replace_on=frozenset({"name"}),
        ),
        Desired(
            "iam_instance_profile.node",
            "iam_instance_profile",
            {"name": names.profile, "role": names.role},
            depends_on=("iam_role.node",),
            replace_on=frozenset({"name"}),
        ),
        Desired(
            "security_group.nodes",
            "security_group",
            {
                "name": names.security_group,
                "vpc": network.vpc_id,
                "ingress": ingress_rules(spec, network),
            },
            replace_on=frozenset({"name", "vpc"}),
        ),
        Desired(
            "load_balancer.nlb",
            "load_balancer",
            {
                "name": names.load_balancer,
                "type": "network",
                "scheme": aws.scheme,
                "subnets": sorted(placement[n].id for n in nodes),
            },
            replace_on=frozenset({"name", "type", "scheme", "subnets"}),
        ),
    ]
    for port in ports:
        check = health_check(spec, port)
        out.append(
            Desired(
                f"target_group.{port}",
                "target_group",
                {
                    "name": names.target_group(port),
                    "protocol": "TCP",
                    "port": port,
                    "vpc": network.vpc_id,
                    "health": check.as_dict(),
                    # 6443/9345 are also reached by the servers themselves through the
                    # NLB (joins); with client IP preservation a server routed to itself
                    # drops the connection (NLB hairpinning).
                    "preserve_client_ip": port not in (APISERVER_PORT, 9345),
                },
                replace_on=frozenset({"name", "protocol", "port", "vpc"}),
            )
        )
    previous: str | None = None
    for node in spec.nodes:
        address = f"instance.{node.name}"
        deps = [
            "security_group.nodes",
            "iam_instance_profile.node",
            "ssm_parameter.rke2_token",
            "load_balancer.nlb",
        ]
        if previous is not None:
            deps.append(previous)
        subnet = placement[node.name]
        out.append(
            Desired(
                address,
                "instance",
                {
                    "name": names.instance(node.name),
                    "ami": aws.ami,
                    "instance_type": aws.instance_type,
                    "zone": subnet.zone,
                    "subnet": subnet.id,
                    "profile": names.profile,
                },
                depends_on=tuple(deps),
                replace_on=frozenset({"ami", "instance_type", "zone", "subnet", "profile"}),
            )
        )
        previous = address
    instances = tuple(f"instance.{n}" for n in nodes)
    for port in ports:
        out.append(
            Desired(
                f"targets.{port}",
                "targets",
                {"targets": sorted(nodes)},
                depends_on=(f"target_group.{port}", *instances),
                rebind=(f"target_group.{port}", *instances),
            )
        )
        out.append(
            Desired(
                f"listener.{port}",
                "listener",
                {"port": port, "protocol": "TCP", "forward_to": names.target_group(port)},
                depends_on=("load_balancer.nlb", f"target_group.{port}"),
                rebind=("load_balancer.nlb", f"target_group.{port}"),
            )
        )
    out.append(
        Desired(
            "dns_record.hostname",
            "dns_record",
            {
                "name": spec.hostname.rstrip(".").lower() + ".",
                "type": "A",
                "alias_to": "load_balancer.nlb",
            },
            depends_on=("load_balancer.nlb",),
            rebind=("load_balancer.nlb",),
        )
    )
    return out
