"""PROXY protocol version 2 header (haproxy.org/download/2.6/doc/proxy-protocol.txt §2.2).

Sent first on a backend connection when `send_proxy` is on, so ingress-nginx
(`use-proxy-protocol: "true"`) and Rancher see the real client address. Pure function of
the two socket addresses; the relay writes the bytes.
"""

from __future__ import annotations

import ipaddress
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_VERSION_PROXY = 0x21  # version 2, command PROXY
_VERSION_LOCAL = 0x20  # version 2, command LOCAL
_TCP4 = 0x11
_TCP6 = 0x21


def proxy_v2_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """The header saying that `source` connected to `destination` over TCP."""
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        # An IPv4 client on an IPv6 listener: map the client to IPv6 as the kernel does.
        if src.version == 4:
            src = ipaddress.IPv6Address(f"::ffff:{src}")
        if dst.version == 4:
            dst = ipaddress.IPv6Address(f"::ffff:{dst}")
    family = _TCP4 if src.version == 4 else _TCP6
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return SIGNATURE + struct.pack("!BBH", _VERSION_PROXY, family, len(body)) + body


def proxy_v2_local_header() -> bytes:
    """The header of a connection the proxy opened itself (§2.2 command LOCAL: "health
    checks"), carrying no addresses; HAProxy's checks send the same."""
    return SIGNATURE + struct.pack("!BBH", _VERSION_LOCAL, 0, 0)


def parse_proxy_v2(data: bytes) -> tuple[tuple[str, int], tuple[str, int], int]:
    """(source, destination, header length) of a v2 PROXY header; ValueError otherwise.

    The built-in lab backends and the tests read the header with this. A LOCAL header (a
    health check's) carries no addresses: both come back as ("", 0).
    """
    if len(data) < 16 or not data.startswith(SIGNATURE):
        raise ValueError("not a PROXY protocol v2 header")
    version, family, length = struct.unpack("!BBH", data[12:16])
    if version == _VERSION_LOCAL:
        return ("", 0), ("", 0), 16 + length
    if version != _VERSION_PROXY or family not in (_TCP4, _TCP6):
        raise ValueError(f"unsupported PROXY v2 command/family {version:#x}/{family:#x}")
    size = 4 if family == _TCP4 else 16
    body = data[16 : 16 + length]
    if len(body) < 2 * size + 4:
        raise ValueError("truncated PROXY v2 header")
    src = str(ipaddress.ip_address(body[:size]))
    dst = str(ipaddress.ip_address(body[size : 2 * size]))
    sport, dport = struct.unpack("!HH", body[2 * size : 2 * size + 4])
    return (src, sport), (dst, dport), 16 + length
