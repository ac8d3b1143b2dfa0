"""`HOST:PORT` as operators write it (`--listen`, `--server`, `dns.builtin.listen`)."""

from __future__ import annotations


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
