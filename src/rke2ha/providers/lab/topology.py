"""From the spec to every lab process: where it listens, how it starts, which URLs to print.

Pure data, no I/O. The port rule is the emulator's (`rke2ha.lab.node_setup.port_offset`):
real ports (80, 443, 6443, 9345, DNS 53) as root, otherwise every port plus
`lab.port_offset`; an explicit offset wins over both. Every printed URL and command carries
the port actually used, so what a user copies is what listens.

Each process is started with the documented command line of its component (`rke2ha lab
node`, `rke2ha lb serve`, `rke2ha dns serve`) and an explicit `--port-offset`/`--listen`,
so the three kinds of process agree on ports without reading each other's defaults. The
command line is also the process's identity: a pid from the state file counts as ours
only while `/proc/<pid>/cmdline` still reads exactly that command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rke2ha.dns.hostport import split_host_port
from rke2ha.errors import UsageError
from rke2ha.lab.material import default_pki_dir
from rke2ha.lab.node_setup import loopback_address, port_offset
from rke2ha.lab.node_states import REAL_PORTS
from rke2ha.render.ingress import needs_ingress_config
from rke2ha.spec import Spec

Kind = Literal["node-emulator", "load-balancer", "dns-server"]
DNS_PORT = 53
LB_ADDRESS = "lb.builtin"
DNS_ADDRESS = "dns.builtin"
NODE_PREFIX = "node."


@dataclass(frozen=True)
class LabProcess:
    """One process of the lab: its plan address, what it is, where it listens."""

    address: str  # "node.node-1", "lb.builtin", "dns.builtin"
    kind: Kind
    name: str  # node name, "lb" or "dns": file names and messages
    host: str  # its loopback address
    tcp_ports: tuple[int, ...]  # every port it listens on (TCP)
    udp_ports: tuple[int, ...] = ()

    @property
    def is_node(self) -> bool:
        return self.kind == "node-emulator"


@dataclass(frozen=True)
class LabTopology:
    """The lab of one spec with one port offset."""

    name: str
    hostname: str
    layer: int
    offset: int
    lb_host: str
    lb_ports: dict[int, int]  # real port -> port listened on
    admin: tuple[str, int] | None
    dns_host: str
    dns_port: int
    nodes: tuple[LabProcess, ...]
    lb: LabProcess
    dns: LabProcess
    state_dir: Path
    pki_dir: Path
    # rke2.anonymous_health: the nodes' /readyz answers anonymous callers (else 401).
    anonymous_health: bool = False
    # Layer 7 or send_proxy: the nodes' ingress reads the HelmChartConfig `rke2ha render`
    # writes (rancher/ingress-helmchartconfig.yaml), as RKE2's would from its manifests.
    feeds_ingress_config: bool = False

    @property
    def processes(self) -> tuple[LabProcess, ...]:
        """Start order: nodes first (the load balancer checks them), then LB, then DNS."""
        return (*self.nodes, self.lb, self.dns)

    def process(self, address: str) -> LabProcess:
        for proc in self.processes:
            if proc.address == address:
                return proc
        raise KeyError(address)

    def node(self, name: str) -> LabProcess:
        for proc in self.nodes:
            if proc.name == name:
                return proc
        known = ", ".join(p.name for p in self.nodes)
        raise UsageError(f"no node named {name!r} in the lab (nodes: {known})")

    # ---- files -------------------------------------------------------------------------------

    @property
    def lab_dir(self) -> Path:
        return self.state_dir / "lab" / self.name

    @property
    def log_dir(self) -> Path:
        return self.lab_dir / "logs"

    def log_file(self, proc: LabProcess) -> Path:
        return self.log_dir / f"{proc.name}.log"

    @property
    def ingress_config_file(self) -> Path | None:
        """Where the lab keeps the rendered ingress config its nodes read, if any."""
        if not self.feeds_ingress_config:
            return None
        return self.lab_dir / "ingress-helmchartconfig.yaml"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    # ---- what people copy --------------------------------------------------------------------

    def _port_suffix(self, real: int) -> str:
        port = real + self.offset
        default = {443: 443, 80: 80}.get(real)
        return "" if port == default else f":{port}"

    @property
    def rancher_url(self) -> str:
        return f"https://{self.hostname}{self._port_suffix(443)}/"

    @property
    def https_port(self) -> int:
        return 443 + self.offset

    def commands(self) -> list[str]:
        """Copy-paste commands that reach the lab the way a user's client would."""
        ca, host, port = self.ca_file, self.hostname, self.https_port
        resolve = f"--resolve {host}:{port}:{self.lb_host}"
        lines = [
            f"curl --cacert {ca} {resolve} https://{host}:{port}/ping",
            f"dig @{self.dns_host} -p {self.dns_port} {host} A +short",
        ]
        if 80 in self.lb_ports:
            http = self.lb_ports[80]
            lines.append(
                f"curl -sI --resolve {host}:{http}:{self.lb_host} http://{host}:{http}/"
                "   # 308 to https"
            )
        if 6443 in self.lb_ports:
            api = self.lb_ports[6443]
            lines.append(
                f"curl --cacert {ca} --resolve {host}:{api}:{self.lb_host} "
                f"https://{host}:{api}/readyz"
                + ("" if self.anonymous_health else "   # 401 without the health token")
            )
        if self.admin is not None:
            lines.append(f"curl http://{self.admin[0]}:{self.admin[1]}/status")
        return lines


def _dns_listen(spec: Spec, offset: int) -> tuple[str, int]:
    listen = spec.dns.builtin.listen
    if listen is None:
        raise UsageError("dns.builtin.listen is not set; set lab.subnet (or dns.builtin.listen)")
    try:
        host, port = split_host_port(listen, DNS_PORT)
    except ValueError as err:
        raise UsageError(f"dns.builtin.listen: {err}") from None
    return loopback_address("dns", host), port + offset


def build_topology(spec: Spec, offset: int | None = None) -> LabTopology:
    """The lab of `spec`; `offset` None applies the root / `lab.port_offset` rule."""
    if spec.provider != "lab":
        raise UsageError(f"the spec's provider is {spec.provider}, not lab")
    applied = port_offset(spec, offset)
    lb_host = spec.load_balancer.address
    if lb_host is None:
        raise UsageError("load_balancer.address is not set; set lab.subnet")
    lb_host = loopback_address("load balancer", lb_host)
    nodes = tuple(
        LabProcess(
            address=f"{NODE_PREFIX}{node.name}",
            kind="node-emulator",
            name=node.name,
            host=loopback_address(node.name, node.address),
            tcp_ports=tuple(port + applied for port in REAL_PORTS.values()),
        )
        for node in spec.nodes
    )
    lb_ports = {port: port + applied for port in spec.load_balancer.ports}
    admin = spec.load_balancer.admin_listen(applied)
    lb_tcp = tuple(lb_ports.values())
    if admin is not None and admin[0] == lb_host:
        lb_tcp += (admin[1],)
    dns_host, dns_port = _dns_listen(spec, applied)
    return LabTopology(
        name=spec.name,
        hostname=spec.hostname,
        layer=spec.load_balancer.layer,
        offset=applied,
        lb_host=lb_host,
        lb_ports=lb_ports,
        admin=admin,
        dns_host=dns_host,
        dns_port=dns_port,
        nodes=nodes,
        lb=LabProcess(LB_ADDRESS, "load-balancer", "lb", lb_host, lb_tcp),
        dns=LabProcess(DNS_ADDRESS, "dns-server", "dns", dns_host, (dns_port,), (dns_port,)),
        state_dir=spec.state_dir,
        pki_dir=default_pki_dir(spec),
        anonymous_health=bool(spec.rke2.anonymous_health),
        feeds_ingress_config=needs_ingress_config(spec),
    )


def command_line(
    topology: LabTopology, proc: LabProcess, spec_file: Path, *, joining: bool = False
) -> tuple[str, ...]:
    """The argv that starts `proc` (absolute paths: it is also the process's identity)."""
    python = sys.executable
    spec = str(spec_file.resolve())
    offset = str(topology.offset)
    if proc.kind == "node-emulator":
        argv = [python, "-m", "rke2ha.commands.lab", "node", "-f", spec, "--name", proc.name]
        argv += ["--port-offset", offset, "--ca-dir", str(topology.pki_dir)]
        if topology.ingress_config_file is not None:
            argv += ["--ingress-config", str(topology.ingress_config_file)]
        if joining:
            argv += ["--state", "joining"]
        return tuple(argv)
    if proc.kind == "load-balancer":
        access_log = str(topology.log_dir / "lb-access.log")
        # `lb serve` reads the layer from the spec (load_balancer.layer).
        serve = ["-m", "rke2ha", "lb", "serve"]
        return (python, *serve, "-f", spec, "--port-offset", offset, "--access-log", access_log)
    listen = f"{topology.dns_host}:{topology.dns_port}"
    # Its health probe (with several load balancer addresses) goes through port 80 + offset.
    health = str(80 + topology.offset)
    dns = ("dns", "serve", "-f", spec, "--listen", listen, "--health-port", health)
    return (python, "-m", "rke2ha", *dns)
