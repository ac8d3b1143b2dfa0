"""When is a freshly started lab process ready, and when is the whole lab healthy?

Each kind says it its own documented way, and each wait is bounded:
- a node emulator writes `{"event": "listening", ...}` to its log once every port is bound;
- the load balancer accepts connections on every frontend port (and its admin endpoint);
- the DNS server answers the hostname's query.
A process that exits while we wait is reported with what its log says in this run, the
cause first (`logexcerpt`: a port in use, a bad certificate), never as a timeout.

`lb_backends` reads the load balancer's admin `/status`: the lab is healthy when every
backend of every frontend has been checked and serves.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from rke2ha.errors import InvalidError
from rke2ha.providers.lab.logexcerpt import log_excerpt
from rke2ha.providers.lab.processes import ProcessInfo
from rke2ha.providers.lab.topology import LabProcess, LabTopology

START_TIMEOUT = 20.0
_POLL = 0.05
LISTENING = '"event": "listening"'


def tcp_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def dns_answers(host: str, port: int, name: str, timeout: float = 0.5) -> bool:
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, host, port=port, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return False
    return reply.rcode() == 0


def _node_listening(log: Path, offset: int) -> bool:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            return LISTENING.encode() in handle.read()
    except OSError:
        return False


def wait_process(
    topology: LabTopology,
    proc: LabProcess,
    log_offset: int,
    alive: Callable[[], ProcessInfo],
    timeout: float = START_TIMEOUT,
) -> float:
    """Block until `proc` is ready; return the seconds it took. InvalidError if it died."""
    start = time.monotonic()
    log = topology.log_file(proc)
    while True:
        if _ready(topology, proc, log, log_offset):
            return time.monotonic() - start
        if not alive().ours:
            raise InvalidError(
                f"lab {proc.name} exited while starting: {log_excerpt(log, log_offset)} "
                f"(log: {log})"
            )
        if time.monotonic() - start > timeout:
            raise InvalidError(
                f"lab {proc.name} was not ready within {timeout:g}s: "
                f"{log_excerpt(log, log_offset)} (log: {log})"
            )
        time.sleep(_POLL)


def _ready(topology: LabTopology, proc: LabProcess, log: Path, log_offset: int) -> bool:
    if proc.kind == "node-emulator":
        return _node_listening(log, log_offset)
    if proc.kind == "load-balancer":
        return all(tcp_open(proc.host, port) for port in proc.tcp_ports)
    return dns_answers(topology.dns_host, topology.dns_port, topology.hostname)


def lb_status(topology: LabTopology, timeout: float = 1.0) -> dict[str, Any] | None:
    """The load balancer's admin `/status` document, or None when it does not answer."""
    if topology.admin is None:
        return None
    host, port = topology.admin
    url = f"http://{host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            document = json.loads(reply.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return document if isinstance(document, dict) else None


def lb_backends(topology: LabTopology, document: dict[str, Any]) -> dict[str, dict[int, bool]]:
    """node name -> {real frontend port: serves} for this lab's frontends only."""
    ours = {f"{topology.lb_host}:{port}": real for real, port in topology.lb_ports.items()}
    view: dict[str, dict[int, bool]] = {}
    for frontend in document.get("frontends", []):
        if not isinstance(frontend, dict):
            continue
        real = ours.get(str(frontend.get("address")))
        if real is None:
            continue
        for backend in frontend.get("backends", []):
            if not isinstance(backend, dict):
                continue
            checked = backend.get("last_check") is not None
            serves = bool(backend.get("serves")) and checked
            view.setdefault(str(backend.get("name")), {})[real] = serves
    return view


def wait_healthy(topology: LabTopology, timeout: float) -> tuple[bool, float, str]:
    """Wait until every node serves on every load balancer port (from `/status`).

    Returns (healthy, seconds, detail). Without an admin endpoint, every frontend port
    accepting a connection is the best that can be seen.
    """
    start = time.monotonic()
    detail = "no answer from the load balancer's admin /status"
    while time.monotonic() - start < timeout:
        if topology.admin is None:
            if all(tcp_open(topology.lb_host, port) for port in topology.lb_ports.values()):
                return True, time.monotonic() - start, "frontends accept (no admin /status)"
        else:
            document = lb_status(topology)
            if document is not None:
                view = lb_backends(topology, document)
                waiting = sorted(
                    f"{name}:{real}"
                    for name, ports in view.items()
                    for real, serves in ports.items()
                    if not serves
                )
                missing = [p.name for p in topology.nodes if p.name not in view]
                if view and not waiting and not missing:
                    count = sum(len(ports) for ports in view.values())
                    seconds = time.monotonic() - start
                    return True, seconds, f"{count} backends serve (load balancer /status)"
                detail = "not serving yet: " + ", ".join(waiting + missing)
        time.sleep(0.1)
    return False, time.monotonic() - start, detail
