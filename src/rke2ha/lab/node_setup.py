"""From the spec to one node emulator's settings: address, ports, TLS files, profile.

The lab's port rule lives here so the orchestration, the load balancer wiring and the
printed URLs all agree: as root the real ports (80, 443, 6443, 9345); otherwise each real
port plus `lab.port_offset`, since unprivileged processes cannot bind below 1024. An
explicit offset (tests, `--port-offset`) wins over both.

A node emulator only ever binds a loopback address: the lab never sends a packet off the
machine, even when a spec names a non-loopback node address.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from rke2ha.errors import UsageError
from rke2ha.lab.ingress_config import read_ingress_config
from rke2ha.lab.ingress_model import IngressSettings
from rke2ha.lab.material import LabPki, ensure_lab_material, find_node
from rke2ha.lab.node_app import DEFAULT_KUBE_VERSION, NodeProfile
from rke2ha.lab.node_states import REAL_PORTS, PortRole
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec

MAX_PORT = 65_535


def port_offset(spec: Spec, explicit: int | None = None) -> int:
    """The offset added to every real port: `explicit`, else 0 as root, else the spec's."""
    if explicit is not None:
        offset = explicit
    elif os.geteuid() == 0:
        offset = 0
    else:
        offset = spec.lab.port_offset if spec.lab is not None else 0
    highest = max(REAL_PORTS.values())
    if offset < 0 or highest + offset > MAX_PORT:
        raise UsageError(
            f"port offset {offset} puts port {highest} at {highest + offset}; "
            f"use an offset from 0 to {MAX_PORT - highest}"
        )
    if offset == 0 and os.geteuid() != 0:
        raise UsageError(
            "ports 80 and 443 need root; run as root or give a port offset "
            "(lab.port_offset in the spec, or --port-offset)"
        )
    return offset


def lab_ports(offset: int) -> dict[PortRole, int]:
    """Where each role listens with `offset` applied."""
    return {role: port + offset for role, port in REAL_PORTS.items()}


def loopback_address(node_name: str, address: str | None) -> str:
    """`address` when it is a loopback IP; UsageError otherwise (the lab stays on-box)."""
    if address is None:
        raise UsageError(f"node {node_name} has no address; set lab.subnet or nodes[].address")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(
            f"node {node_name}: address {address!r} is not an IP address; the lab needs a "
            "loopback IP (127.0.0.0/8)"
        ) from None
    if not ip.is_loopback:
        raise UsageError(
            f"node {node_name}: address {address} is not a loopback address; a lab node "
            "only binds 127.0.0.0/8 (remove nodes[].address to use lab.subnet)"
        )
    return address


@dataclass(frozen=True)
class NodeSetup:
    """Everything `node_server` needs to run one emulator."""

    profile: NodeProfile
    address: str
    ports: dict[PortRole, int]
    pki: LabPki
    health_token_file: Path = field(repr=False)

    @property
    def ingress_cert(self) -> tuple[Path, Path]:
        return self.pki.ingress_cert, self.pki.ingress_key

    @property
    def node_cert(self) -> tuple[Path, Path]:
        return self.pki.node_cert(self.profile.name), self.pki.node_key(self.profile.name)


def setup_node(
    spec: Spec,
    node_name: str,
    *,
    offset: int | None = None,
    pki_dir: Path | None = None,
    rancher_installed: bool = True,
    ingress_config: Path | None = None,
) -> NodeSetup:
    """Prepare (or reuse) the lab material and describe node `node_name` of `spec`.

    `ingress_config` is a rendered ingress HelmChartConfig (`rke2ha render`'s
    rancher/ingress-helmchartconfig.yaml); without it the ingress has RKE2's defaults.
    """
    if spec.provider != "lab":
        raise UsageError(
            f"the spec's provider is {spec.provider}; node emulators run only for provider: lab"
        )
    node = find_node(spec, node_name)
    address = loopback_address(node.name, node.address)
    applied = port_offset(spec, offset)
    # Read before any lab material is made: a wrong file leaves nothing behind.
    settings = read_ingress_config(ingress_config) if ingress_config else IngressSettings()
    # renew=False: serve the certificates that are there (renewing is `up`'s job), so a
    # planted expired certificate stays planted.
    material = ensure_lab_material(spec, pki_dir, renew=False)
    ports = lab_ports(applied)
    profile = NodeProfile(
        name=node.name,
        hostname=spec.hostname,
        ingress=spec.ingress,
        layer7=spec.rancher_tls_external,
        anonymous_health=bool(spec.rke2.anonymous_health),
        health_token=read_secret(material.health_token_file, what="lab health token"),
        ca_pem=material.pki.ca_cert.read_bytes(),
        kube_version=spec.rke2.version or DEFAULT_KUBE_VERSION,
        rancher_installed=rancher_installed,
        ingress_settings=settings,
    )
    return NodeSetup(profile, address, ports, material.pki, material.health_token_file)
