"""The test network: network namespaces of the session's own joined by one bridge.

Layout (every name starts with the session prefix, so a later session can sweep leftovers):
- `<prefix>-br`: holds bridge `br0` with BRIDGE_ADDRESS (every machine's default gateway);
- `<prefix>-ws`: the workstation, where the code under test runs (`ip netns exec`);
- `<prefix>-<machine>`: one per machine, given to systemd-nspawn as its network namespace.
Each veth pair is created directly between the bridge namespace and its peer namespace, so no
link, address or route ever appears in the root namespace."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

NETWORK = ipaddress.ip_network("198.18.0.0/16")  # RFC 2544 benchmarking range, never routed
BRIDGE_ADDRESS = "198.18.0.1"
WORKSTATION_ADDRESS = "198.18.0.2"
FIRST_MACHINE_HOST = 11  # machine i (0-based) is 198.18.0.(11 + i)
NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    pass


def ip(*argv: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def machine_address(index: int) -> str:
    address = NETWORK.network_address + (FIRST_MACHINE_HOST + index)
    if address not in NETWORK or address == NETWORK.broadcast_address:
        raise NetworkError(f"no address left in {NETWORK} for machine #{index}")
    return str(address)


def add_netns(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete_netns(name: str) -> None:
    """Remove a namespace (its veth ends go with it); already gone is fine."""
    if (NETNS_DIR / name).exists():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


class TestNetwork:
    """The bridge namespace plus one veth-attached namespace per member."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.bridge_ns = f"{prefix}-br"
        self.namespaces: list[str] = []
        self._attached = 0  # members ever attached: names the next bridge port

    def create(self) -> None:
        add_netns(self.bridge_ns)
        self.namespaces.append(self.bridge_ns)
        ip("link", "add", "br0", "type", "bridge", "forward_delay", "0", netns=self.bridge_ns)
        ip(
            "addr",
            "add",
            f"{BRIDGE_ADDRESS}/{NETWORK.prefixlen}",
            "dev",
            "br0",
            netns=self.bridge_ns,
        )
        ip("link", "set", "br0", "up", netns=self.bridge_ns)

    def attach(self, member: str, address: str) -> tuple[str, str]:
        """A new namespace `<prefix>-<member>` on the bridge with `address` on its eth0 and a
        default route via the bridge; returns the namespace's name and its bridge port."""
        netns = f"{self.prefix}-{member}"
        add_netns(netns)
        self.namespaces.append(netns)
        self._attached += 1
        port = f"p{self._attached}"  # the bridge side, named within the bridge's netns
        ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns,
           netns=self.bridge_ns)  # fmt: skip
        ip("link", "set", port, "master", "br0", "up", netns=self.bridge_ns)
        ip("addr", "add", f"{address}/{NETWORK.prefixlen}", "dev", "eth0", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
        ip("route", "add", "default", "via", BRIDGE_ADDRESS, netns=netns)
        return netns, port

    def set_port(self, port: str, up: bool) -> None:
        """Cable in or out: a member whose port is down is unreachable the way a powered-off
        machine is (no ARP answer: "No route to host"), not refusing connections."""
        ip("link", "set", port, "up" if up else "down", netns=self.bridge_ns)

    def detach(self, netns: str) -> None:
        """Delete a member's namespace; its veth pair (and so its bridge port) goes with it."""
        delete_netns(netns)
        self.namespaces.remove(netns)

    def destroy(self) -> None:
        for netns in reversed(self.namespaces):
            delete_netns(netns)
        self.namespaces.clear()
