"""The checks on one node's facts, and on the nodes together (hostnames, clock skew).

Each check returns the value it found and, when the node fails it, a `Problem` (severity,
what is wrong and why, the fix). Thresholds and their sources: docs/architecture.md and
`rke2ha.preflight.sources`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rke2ha.preflight import sources
from rke2ha.preflight.facts import NodeFacts
from rke2ha.preflight.finding import NodeFinding, Outcome, Problem

GIB = 1024**3
# MemTotal is what the kernel has left after its own reservations: a 4 GB machine shows
# about 3.8 GiB, a 16 GB one about 15.5 GiB; the thresholds leave room for that.
MEMORY_MIN, MEMORY_RANCHER = int(3.5 * GIB), 15 * GIB
CPU_MIN, CPU_RANCHER = 2, 4
# Ports a server binds itself (sources.RKE2_LOCAL_PORTS); taken by anything else, RKE2 fails.
TCP_PORTS = (80, 443, 2379, 2380, 2381, 6443, 9345, 10248, 10250, 10257, 10259)
UDP_PORTS = (8472,)
NM_NEEDED = ("interface-name:cali*", "interface-name:flannel*")
MAX_SKEW = 1.0  # seconds (sources.TIME)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def check_systemd(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.pid1 == "systemd":
        return "systemd", None
    return f.pid1 or "unknown", Problem(
        "error",
        f"PID 1 is {f.pid1 or 'unknown'}, not systemd; RKE2 runs as systemd units",
        "use a Linux distribution that boots with systemd",
    )


def check_arch(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.arch == "x86_64":
        return f.arch, None
    if f.arch in ("aarch64", "arm64"):
        return f.arch, Problem(
            "warning",
            f"{f.arch}: RKE2 supports it, but its air-gap artifacts and images are per "
            "architecture, so every node and artifact must match",
            "use arm64 artifacts on every node, or x86_64 machines",
        )
    return f.arch or "unknown", Problem(
        "error",
        f"architecture {f.arch or 'unknown'}: RKE2 runs on x86_64 and arm64 only",
        "use x86_64 (or arm64) machines",
    )


def check_cpu(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.cpus is None:
        return "unknown", Problem(
            "error", "could not read the CPU count (nproc)", "check coreutils"
        )
    value = f"{f.cpus} CPU"
    if f.cpus < CPU_MIN:
        return value, Problem(
            "error",
            f"{f.cpus} CPU: an RKE2 server needs {CPU_MIN} at least",
            f"give the machine {CPU_RANCHER} CPUs ({CPU_MIN} at the very least)",
        )
    if f.cpus < CPU_RANCHER:
        return value, Problem(
            "warning",
            f"{f.cpus} CPU: enough for RKE2, tight for Rancher on top",
            f"give the machine {CPU_RANCHER} CPUs or more",
        )
    return value, None


def check_memory(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.memory_bytes is None:
        return "unknown", Problem(
            "error", "could not read MemTotal in /proc/meminfo", "check /proc"
        )
    value = _gib(f.memory_bytes)
    if f.memory_bytes < MEMORY_MIN:
        return value, Problem(
            "error",
            f"{value} of memory: an RKE2 server needs 4 GB at least",
            "give the machine 16 GB (4 GB at the very least)",
        )
    if f.memory_bytes < MEMORY_RANCHER:
        return value, Problem(
            "warning",
            f"{value} of memory: enough for RKE2, tight for Rancher on top",
            "give the machine 16 GB or more",
        )
    return value, None


def check_ports(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.unit("rke2-server").running:
        # A server rke2ha (or anyone) already runs: the ports are held by RKE2 itself, which
        # is what a second `up` over installed nodes finds.
        return "held by RKE2 (rke2-server is running)", None
    taken = [
        f"{lst.proto.upper()} {lst.port}" + (f" held by {lst.process}" if lst.process else "")
        for lst in f.listeners
        if (lst.proto == "tcp" and lst.port in TCP_PORTS)
        or (lst.proto == "udp" and lst.port in UDP_PORTS)
    ]
    taken = sorted(set(taken))
    if not taken:
        return "free", None
    return ", ".join(taken), Problem(
        "error",
        f"ports RKE2 needs are taken: {', '.join(taken)}",
        "stop or move what holds them (ss -ltnup shows it); RKE2 binds them itself",
    )


def _unit_problem(f: NodeFacts, unit: str) -> str:
    state = f.unit(unit)
    if state.running:
        return f"{unit} {state.active}"
    if state.will_start:
        return f"{unit} {state.enabled}"
    return ""


def check_firewalld(f: NodeFacts) -> tuple[str, Problem | None]:
    found = _unit_problem(f, "firewalld")
    if not found:
        return "inactive", None
    return found, Problem(
        "error",
        f"{found}: firewalld's rules conflict with RKE2's networking",
        "systemctl disable --now firewalld (RKE2's docs recommend turning it off)",
    )


def check_networkmanager(f: NodeFacts) -> tuple[str, Problem | None]:
    state = f.unit("NetworkManager")
    if not (state.running or state.will_start):
        return "not running", None
    have = set(f.nm_unmanaged)
    missing = [spec for spec in NM_NEEDED if spec not in have and "interface-name:*" not in have]
    value = "unmanaged-devices=" + (";".join(f.nm_unmanaged) or "(none)")
    if not missing:
        return value, None
    return value, Problem(
        "error",
        f"NetworkManager manages the CNI's interfaces ({', '.join(missing)} missing); it "
        "interferes with their routes",
        "add /etc/NetworkManager/conf.d/rke2-canal.conf with [keyfile] and "
        "unmanaged-devices=interface-name:cali*;interface-name:flannel*, then "
        "systemctl reload NetworkManager",
    )


def check_nm_cloud_setup(f: NodeFacts) -> tuple[str, Problem | None]:
    found = [p for p in (_unit_problem(f, u) for u in ("nm-cloud-setup.service",
                                                      "nm-cloud-setup.timer")) if p]  # fmt: skip
    if not found:
        return "disabled", None
    return ", ".join(found), Problem(
        "error",
        f"{', '.join(found)}: nm-cloud-setup changes the routing table under RKE2",
        "systemctl disable nm-cloud-setup.service nm-cloud-setup.timer, then reboot",
    )


def check_selinux(f: NodeFacts) -> tuple[str, Problem | None]:
    value = f.selinux + (" with rke2-selinux" if f.rke2_selinux else "")
    if f.selinux != "enforcing" or f.rke2_selinux:
        return value, None
    return value, Problem(
        "error",
        "SELinux enforces and the rke2-selinux policy is not installed",
        "install rke2-selinux (RKE2's RPM repository) before RKE2",
    )


def check_apparmor(f: NodeFacts) -> tuple[str, Problem | None]:
    if not f.apparmor:
        return "disabled", None
    if f.apparmor_parser:
        return f"enabled, {f.apparmor_parser}", None
    return "enabled, no apparmor_parser", Problem(
        "error",
        "AppArmor is enabled and apparmor_parser is missing: containerd cannot create the "
        "control plane's containers",
        "install the apparmor package (apt install apparmor)",
    )


def check_time_sync(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.time_synchronized:
        return "synchronised", None
    value = "not synchronised" if f.time_synchronized is False else "unknown"
    return value, Problem(
        "warning",
        f"the clock is {value} (timedatectl NTPSynchronized); etcd members drift apart "
        "without NTP (pre-flight measures the skew between the nodes separately)",
        "run an NTP client (systemd-timesyncd or chrony) on every node",
    )


def check_swap(f: NodeFacts) -> tuple[str, Problem | None]:
    if not f.swaps:
        return "off", None
    value = ", ".join(f"{s.name} {s.size_kib / 1024**2:.1f} GiB" for s in f.swaps)
    return value, Problem(
        "warning",
        f"swap is on ({value}); the kubelet's memory accounting assumes none",
        "swapoff -a and remove the swap entries from /etc/fstab",
    )


def check_default_route(f: NodeFacts) -> tuple[str, Problem | None]:
    if f.default_routes:
        return f.default_routes[0], None
    return "none", Problem(
        "error",
        "no default route: RKE2 picks the node's address from it and exits without one",
        "add a default route (a gateway on the node's network)",
    )


@dataclass(frozen=True)
class NodeCheck:
    id: str
    summary: str
    source: str
    run: Callable[[NodeFacts], tuple[str, Problem | None]]


NODE_CHECKS: tuple[NodeCheck, ...] = (
    NodeCheck("node.systemd", "PID 1 is systemd", sources.RKE2_ARCH, check_systemd),
    NodeCheck("node.arch", "x86_64 (aarch64 warns)", sources.RKE2_ARCH, check_arch),
    NodeCheck("node.cpu", "2 CPUs or more (4 for Rancher)", sources.RKE2_HARDWARE, check_cpu),
    NodeCheck("node.memory", "4 GB or more (16 for Rancher)", sources.RKE2_HARDWARE,
              check_memory),
    NodeCheck("node.ports_free", "RKE2's ports not taken", sources.RKE2_LOCAL_PORTS,
              check_ports),
    NodeCheck("node.firewalld", "firewalld off", sources.FIREWALLD, check_firewalld),
    NodeCheck("node.networkmanager", "NetworkManager leaves cali*/flannel* alone",
              sources.NETWORKMANAGER, check_networkmanager),
    NodeCheck("node.nm_cloud_setup", "nm-cloud-setup service and timer disabled",
              sources.NM_CLOUD_SETUP, check_nm_cloud_setup),
    NodeCheck("node.selinux", "enforcing SELinux has rke2-selinux", sources.SELINUX,
              check_selinux),
    NodeCheck("node.apparmor", "enabled AppArmor has apparmor_parser", sources.APPARMOR,
              check_apparmor),
    NodeCheck("node.time_sync", "clock synchronised", sources.TIME, check_time_sync),
    NodeCheck("node.swap", "swap off (warning)", sources.SWAP, check_swap),
    NodeCheck("node.default_route", "a default route", sources.DEFAULT_ROUTE,
              check_default_route),
)  # fmt: skip
NODE_SOURCES = {c.id: c.source for c in NODE_CHECKS}


def stamp(check_id: str, node: str, index: int, value: str, problem: Problem,
          source: str) -> NodeFinding:  # fmt: skip
    return NodeFinding(
        id=check_id,
        severity=problem.severity,
        message=problem.message,
        fix=problem.fix,
        path=f"nodes[{index}]" if index >= 0 else "nodes",
        source=source,
        node=node,
        value=value,
    )


def run_node_checks(facts: NodeFacts) -> list[Outcome]:
    return [Outcome(c.id, *c.run(facts)) for c in NODE_CHECKS]


def hostname_findings(hostnames: Sequence[tuple[str, int, str]]) -> list[NodeFinding]:
    """(node, index, hostname) of every reached node: one error per node whose hostname
    another node has too (compared case-insensitively, as DNS and Kubernetes do)."""
    by_name: dict[str, list[str]] = {}
    for node, _, hostname in hostnames:
        by_name.setdefault(hostname.lower(), []).append(node)
    found = []
    for node, index, hostname in hostnames:
        others = [n for n in by_name[hostname.lower()] if n != node]
        if others:
            problem = Problem(
                "error",
                f"hostname {hostname} is also the hostname of {', '.join(others)}; RKE2 names "
                "nodes after their hostname and refuses a second node of the same name",
                f"give {node} a unique hostname (hostnamectl set-hostname {node})",
            )
            found.append(stamp("node.hostname_unique", node, index, hostname, problem,
                               sources.RKE2_NODE_NAMES))  # fmt: skip
    return found


@dataclass(frozen=True)
class ClockReading:
    """A node's clock read over SSH: its time, and our time before and after asking."""

    node: str
    index: int
    remote: float
    sent: float
    received: float

    @property
    def offset(self) -> float:
        return self.remote - (self.sent + self.received) / 2

    @property
    def uncertainty(self) -> float:
        return (self.received - self.sent) / 2


def skew_findings(readings: Sequence[ClockReading]) -> list[NodeFinding]:
    """An error on each node whose clock is more than MAX_SKEW from the others' (their
    median, so one wrong clock is blamed on its node alone), counting only skew beyond the
    round trip's uncertainty (a slow answer proves no skew)."""
    if len(readings) < 2:
        return []
    reference = statistics.median(r.offset for r in readings)
    found = []
    for reading in readings:
        skew = reading.offset - reference
        if abs(skew) - reading.uncertainty <= MAX_SKEW:
            continue
        way = "ahead of" if skew > 0 else "behind"
        problem = Problem(
            "error",
            f"the clock of {reading.node} is {abs(skew):.1f}s {way} the other nodes'; etcd "
            f"wants its members within {MAX_SKEW:g}s",
            "synchronise every node's clock with NTP (systemd-timesyncd or chrony)",
        )
        found.append(stamp("node.clock_skew", reading.node, reading.index,
                           f"{skew:+.3f}s", problem, sources.TIME))  # fmt: skip
    return found
