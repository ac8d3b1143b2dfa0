"""Before `up` starts anything: is every address:port the lab will open still free?

A lab opens only its own addresses (`lab.subnet`) and ports (+ the offset), the admin
endpoint's too. When another program (often a second lab on the same subnet) already
holds one, starting the lab would leave some processes running and others dead; asking
first lets `up` refuse with nothing started and name the spec fields that move the lab.

`in_use` is the only I/O: a plain bind without SO_REUSEPORT, which fails while any socket
listens there (the load balancer's SO_REUSEPORT listeners included) and succeeds over
connections left in TIME_WAIT, as the lab's own servers do (SO_REUSEADDR).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from rke2ha.providers.lab.topology import LabProcess, LabTopology


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


def in_use(proto: str, host: str, port: int) -> bool:
    """True when binding host:port fails with EADDRINUSE (someone else holds it)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if proto == "tcp":  # as the lab's servers do; UDP has no TIME_WAIT to step over
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            # EACCES (a low port without root) is the process's own error to report.
            return err.errno == errno.EADDRINUSE
    return False


def busy_ports(topology: LabTopology, procs: Iterable[LabProcess]) -> list[Busy]:
    """Every address:port of `procs` another socket holds now."""
    found = []
    for proc in procs:
        wanted = [("tcp", p) for p in proc.tcp_ports] + [("udp", p) for p in proc.udp_ports]
        found += [
            Busy(proc.name, proto, proc.host, port, _field(topology, proc, port))
            for proto, port in wanted
            if in_use(proto, proc.host, port)
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
