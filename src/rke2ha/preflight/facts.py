"""What pre-flight learned about one node: the parsed sections of the gather script."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rke2ha.preflight import parsers
from rke2ha.preflight.gather import split
from rke2ha.preflight.parsers import Listener, Swap, UnitState


@dataclass(frozen=True)
class NodeFacts:
    arch: str = ""
    cpus: int | None = None
    memory_bytes: int | None = None
    hostname: str = ""
    os: str = ""
    pid1: str = ""
    listeners: list[Listener] = field(default_factory=list)
    units: dict[str, UnitState] = field(default_factory=dict)
    nm_unmanaged: list[str] = field(default_factory=list)
    selinux: str = "disabled"
    rke2_selinux: bool = False
    apparmor: bool = False
    apparmor_parser: str = ""
    time_synchronized: bool | None = None
    swaps: list[Swap] = field(default_factory=list)
    default_routes: list[str] = field(default_factory=list)
    python: str = ""  # path of a Python 3, for the pair probes

    def unit(self, name: str) -> UnitState:
        return self.units.get(name, UnitState("", ""))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_output(output: str) -> NodeFacts:
    """The facts in the gather script's output."""
    s = split(output)
    return NodeFacts(
        arch=parsers.first_line(s.get("arch", "")),
        cpus=parsers.integer(s.get("nproc", "")),
        memory_bytes=parsers.meminfo_total(s.get("meminfo", "")),
        hostname=parsers.first_line(s.get("hostname", "")),
        os=parsers.os_release(s.get("os", "")),
        pid1=parsers.first_line(s.get("pid1", "")),
        listeners=parsers.listeners(s.get("listen", "")),
        units=parsers.units(s.get("units", "")),
        nm_unmanaged=parsers.nm_unmanaged(s.get("nmconf", "")),
        selinux=parsers.selinux(s.get("selinux", "")),
        rke2_selinux=bool(parsers.first_line(s.get("rke2_selinux", "")).startswith("rke2-selinux")),
        apparmor=parsers.yes_no(s.get("apparmor", "")) is True,
        apparmor_parser=parsers.first_line(s.get("apparmor_parser", "")),
        time_synchronized=parsers.yes_no(s.get("timesync", "")),
        swaps=parsers.swaps(s.get("swaps", "")),
        default_routes=parsers.default_routes(s.get("route", "")),
        python=parsers.first_line(s.get("python", "")),
    )
