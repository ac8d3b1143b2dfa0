"""Before `up` starts anything: is every address:port the lab will open still free?

A lab opens only its own addresses (`lab.subnet`) and ports (+ the offset), the admin
endpoint's too. When another program (often a second lab on the same subnet) already
holds one, starting the lab would leave some processes running and others dead; asking
first lets `up` refuse with nothing started and name the spec fields that move the lab.

`listening` is the only I/O: it reads the kernel's socket tables (/proc/net/tcp, udp and
their IPv6 twins) instead of trying a bind. A trial bind cannot tell: with SO_REUSEPORT it
succeeds beside another lab's SO_REUSEPORT listener (the kernel would then split that
port's clients between the two), and without it, it fails over connections a lab just
stopped left in TIME_WAIT, which the lab's own SO_REUSEPORT bind steps over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rke2ha.providers.lab.topology import LabProcess, LabTopology

PROC_NET = Path("/proc/net")


@dataclass(frozen=True)
class Busy:
    """One address:port the lab needs that another socket holds."""

    proc: str  # lab process name: node-1, lb, dns
    proto: str  # tcp | udp
    host: str
    port: int
    field: str  # the spec field that decides this address:port

    def __str__(self) -> str:
        return f"{self.proto} {self.host}:{self.port} ({self.proc}, {self.field})"


def _field(topology: LabTopology, proc: LabProcess, port: int) -> str:
    if proc.kind == "load-balancer" and topology.admin == (proc.host, port):
        return "load_balancer.admin"
    if proc.kind == "load-balancer":
        return "load_balancer.ports"
    if proc.kind == "dns-server":
        return "dns.builtin.listen"
    return "nodes[].address"


def _hex_ipv4(value: str) -> str:
    return socket.inet_ntoa(bytes.fromhex(value)[::-1])


def listening(proc_net: Path = PROC_NET) -> set[tuple[str, str, int]]:
    """(proto, IPv4 address, port) of every listening TCP and bound UDP socket, from the
    kernel's tables; IPv6 wildcard listeners count as 0.0.0.0 (they take IPv4 too)."""
    found: set[tuple[str, str, int]] = set()
    for proto, state in (("tcp", "0A"), ("udp", "07")):
        for table, v6 in ((proto, False), (f"{proto}6", True)):
            try:
                lines = (proc_net / table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 4 or fields[3] != state:
                    continue
                address, _, port = fields[1].partition(":")
                if v6:
                    if address.strip("0"):
                        continue  # only the wildcard `::` takes IPv4 addresses too
                    host = "0.0.0.0"
                else:
                    host = _hex_ipv4(address)
                found.add((proto, host, int(port, 16)))
    return found


def in_use(proto: str, host: str, port: int, taken: set[tuple[str, str, int]]) -> bool:
    """True when a socket listens on host:port, or on the wildcard address at that port."""
    return (proto, host, port) in taken or (proto, "0.0.0.0", port) in taken


def busy_ports(topology: LabTopology, procs: Iterable[LabProcess]) -> list[Busy]:
    """Every address:port of `procs` another socket holds now."""
    taken = listening()
    found = []
    for proc in procs:
        wanted = [("tcp", p) for p in proc.tcp_ports] + [("udp", p) for p in proc.udp_ports]
        found += [
            Busy(proc.name, proto, proc.host, port, _field(topology, proc, port))
            for proto, port in wanted
            if in_use(proto, proc.host, port, taken)
        ]
    return found


def busy_message(topology: LabTopology, busy: list[Busy], spec_file: str) -> str:
    """One error: what is taken, that nothing was started, which spec fields move the lab."""
    taken = "; ".join(str(b) for b in busy)
    moves = [f"lab.subnet (the lab's addresses, {topology.lb_host} and its neighbours)"]
    if os.geteuid() != 0 and topology.offset:
        moves.append(f"lab.port_offset (now {topology.offset})")
    if any(b.field == "load_balancer.admin" for b in busy):
        moves.append("load_balancer.admin (the admin endpoint alone)")
    return (
        f"the lab's ports are taken by another program (another lab?): {taken}. Nothing "
        f"was started. Give this lab its own addresses or ports in {spec_file}: "
        + ", or ".join(moves)
    )
