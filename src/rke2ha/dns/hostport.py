"""`HOST:PORT` as operators write it (`--listen`, `--server`, `dns.builtin.listen`)."""

from __future__ import annotations

import ipaddress
import socket

from rke2ha.errors import UsageError


def split_host_port(text: str, default_port: int, lowest: int = 1) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `host` or `v6` -> (host, port); ValueError when unreadable.

    `lowest=0` lets a listener ask for any free port.
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not lowest <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be a number from {lowest} to 65535")
    return host, int(port_text)


def resolve_host_port(text: str, default_port: int, what: str) -> tuple[str, int]:
    """`split_host_port`, then the host as an IP address: a name is resolved once here
    (an operator types `--server ns1.example.com`), since the DNS client (dnspython) takes
    addresses only. UsageError naming `what` (the flag or field) when either step fails."""
    try:
        host, port = split_host_port(text, default_port)
    except ValueError as err:
        raise UsageError(f"{what} {err}; write HOST, HOST:PORT or [IPV6]:PORT") from None
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    if ":" in host:
        raise UsageError(
            f"{what} {text!r}: {host!r} is neither an IPv6 address nor a host name; "
            "write HOST, HOST:PORT or [IPV6]:PORT"
        )
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as err:
        reason = err.strerror if isinstance(err, socket.gaierror) else str(err)
        raise UsageError(
            f"{what} {text!r}: cannot resolve {host!r} ({reason}); give an IP address "
            "or a name this machine resolves"
        ) from None
    return str(found[0][4][0]), port
