"""Between the servers: does every server reach every other on the ports RKE2 uses between
them (TCP 9345, 6443, 2379, 2380, 10250; UDP 8472 for canal's VXLAN)? Sans-I/O: the two
Python programs the nodes run, what to start where, and the judging of the answers.

Where nothing listens on a port yet (RKE2 is not installed), the far node runs `LISTENER`
for the duration of the probes: it accepts TCP connections and echoes UDP datagrams, as the
login user (every port is above 1024), and exits when its stdin closes (the SSH channel
ends) or after `LISTENER_LIFETIME` seconds, whichever comes first. A TCP connect that times
out is `dropped` (a firewall discarding it), a refused one `refused` (a firewall rejecting
it, or nothing listening), no route `unreachable`; a UDP datagram with no echo after three
tries is `dropped`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rke2ha.preflight import sources
from rke2ha.preflight.checks import stamp
from rke2ha.preflight.facts import NodeFacts
from rke2ha.preflight.finding import NodeFinding, Problem

PORTS: tuple[tuple[str, int], ...] = (
    ("tcp", 9345), ("tcp", 6443), ("tcp", 2379), ("tcp", 2380), ("tcp", 10250), ("udp", 8472),
)  # fmt: skip
LISTENER_LIFETIME = 60  # seconds; the runner closes it long before
PROBE_TIMEOUT = 3.0  # seconds per TCP connect / UDP echo wait
LISTENER_MARK = "rke2ha-preflight-listener"  # in its argv, so a test can look for it

# argv: MARK lifetime proto:port ...; prints "ready proto:port ..." once bound ("busy" for a
# port it could not bind), then serves until stdin closes or the lifetime ends.
LISTENER = r"""
import os, select, socket, sys, time
end = time.monotonic() + float(sys.argv[2])
socks, ready = [], []
for spec in sys.argv[3:]:
    proto, port = spec.split(":")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", int(port)))
    except OSError:
        print("busy", spec, flush=True)
        continue
    if proto == "tcp":
        s.listen(64)
    socks.append(s)
    ready.append(spec)
print("ready", *ready, flush=True)
stdin = sys.stdin.fileno()
while time.monotonic() < end:
    r, _, _ = select.select(socks + [stdin], [], [], max(0.0, min(1.0, end - time.monotonic())))
    for s in r:
        if s == stdin:
            if not os.read(stdin, 4096):
                sys.exit(0)
        elif s.type == socket.SOCK_STREAM:
            c, _ = s.accept()
            c.close()
        else:
            data, peer = s.recvfrom(512)
            s.sendto(data, peer)
"""

# argv: timeout address:proto:port ...; prints one JSON line per target.
PROBE = r"""
import errno, json, os, socket, sys, threading
timeout = float(sys.argv[1])
def tcp(address, port):
    with socket.socket() as s:
        s.settimeout(timeout)
        s.connect((address, port))
        return "open"
def udp(address, port):
    # Not connected: a node with several addresses may answer from another one than asked.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        token = os.urandom(8).hex().encode()
        for _ in range(3):
            s.sendto(token, (address, port))
            s.settimeout(timeout / 3)
            try:
                while s.recvfrom(512)[0] != token:
                    pass
                return "open"
            except socket.timeout:
                continue
        return "dropped"
def attempt(probe, address, port):
    try:
        return probe(address, port)
    except socket.timeout:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return "error: " + (e.strerror or str(e))
results = {}
def run(target):
    address, proto, port = target.rsplit(":", 2)
    results[target] = attempt(tcp if proto == "tcp" else udp, address, int(port))
threads = [threading.Thread(target=run, args=(t,)) for t in sys.argv[2:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
for target in sys.argv[2:]:
    address, proto, port = target.rsplit(":", 2)
    print(json.dumps({"to": address, "proto": proto, "port": int(port), "result": results[target]}))
"""


@dataclass(frozen=True)
class Peer:
    node: str
    index: int
    address: str  # the node's address as the other servers reach it (spec nodes[].address)


@dataclass(frozen=True)
class ProbeResult:
    source: str  # node name
    target: str  # node name
    proto: str
    port: int
    result: str  # open | dropped | refused | unreachable | not probed: ... | error: ...

    def as_dict(self) -> dict[str, object]:
        return {"from": self.source, "to": self.target, "proto": self.proto,
                "port": self.port, "result": self.result}  # fmt: skip


def to_open(facts: NodeFacts) -> list[str]:
    """`proto:port` of the probe ports nothing listens on yet (the listener takes them)."""
    taken = {(lst.proto, lst.port) for lst in facts.listeners}
    return [f"{proto}:{port}" for proto, port in PORTS if (proto, port) not in taken]


def udp_taken(facts: NodeFacts) -> list[int]:
    """UDP probe ports something else holds: no echo there, so they cannot be probed."""
    return [port for proto, port in PORTS if proto == "udp" and any(
        lst.proto == "udp" and lst.port == port for lst in facts.listeners)]  # fmt: skip


def listener_argv(python: str, ports: Sequence[str]) -> str:
    return f"{python} -c {_quote(LISTENER)} {LISTENER_MARK} {LISTENER_LIFETIME} {' '.join(ports)}"


def probe_argv(python: str, targets: Iterable[tuple[str, str, int]]) -> str:
    args = " ".join(f"{address}:{proto}:{port}" for address, proto, port in targets)
    return f"{python} -c {_quote(PROBE)} {PROBE_TIMEOUT:g} {args}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def parse_ready(line: str) -> list[str]:
    """The `proto:port`s the listener bound, from its first line(s)."""
    fields = line.split()
    return fields[1:] if fields and fields[0] == "ready" else []


def parse_probe(source: str, output: str, by_address: dict[str, str]) -> list[ProbeResult]:
    found = []
    for line in output.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        target = by_address.get(item.get("to", ""))
        if target is not None:
            found.append(ProbeResult(source, target, item["proto"], int(item["port"]),
                                     str(item["result"])))  # fmt: skip
    return found


def judge(results: Sequence[ProbeResult], peers: dict[str, Peer]) -> list[NodeFinding]:
    """One error per blocked (source, target, port): `from node-1 to node-3: TCP 2380
    dropped`, on the source node."""
    found = []
    for r in results:
        if r.result == "open" or r.result.startswith("not probed"):
            continue
        source, target = peers[r.source], peers[r.target]
        what = f"{r.proto.upper()} {r.port} {r.result}"
        problem = Problem(
            "error",
            f"from {r.source} to {r.target}: {what}; RKE2 servers must reach each other there",
            f"allow {r.proto.upper()} {r.port} from {source.address} to {target.address}: the "
            f"firewall of {r.target} (nft list ruleset, iptables -S), of {r.source} (output), "
            "and any between them (security groups, network ACLs)",
        )
        found.append(stamp("node.reach", r.source, source.index, f"to {r.target}: {what}",
                           problem, sources.RKE2_PORTS))  # fmt: skip
    return found
