"""Address text checks shared by the renderers and the rules.

Kept apart from both (and on the standard library only) so either can use it without
importing the other's dependencies.
"""

from __future__ import annotations

import ipaddress
import re


def is_ip(text: str) -> bool:
    """Is `text` an IPv4 or IPv6 address literal (not a hostname)?"""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# RFC 1123 section 2.1 host names: dot-separated labels of letters, digits and inner
# hyphens, each 1-63 characters, 253 in all; a trailing dot (fully qualified) is allowed.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")


def address_problem(text: str) -> str | None:
    """Why `text` is neither an IP address nor an RFC 1123 host name; None when it is one.

    The answer says what is wrong in words (a port, a URL, a space), so the spec error
    tells the operator what to change rather than only that the value is bad.
    """
    if not text:
        return "it is empty"
    if any(char.isspace() or not char.isprintable() for char in text):
        return "it holds a space, tab, line break or other control character"
    if is_ip(text):
        return None
    if "://" in text or "/" in text:
        return "it is a URL or path; give the host name, not a URL (drop https:// and the path)"
    if text.startswith("[") and text.endswith("]") and is_ip(text[1:-1]):
        return "write the IPv6 address without brackets"
    host, sep, port = text.rpartition(":")
    if sep and host and port.isdigit() and (is_ip(host.strip("[]")) or ":" not in host):
        return f"a port does not belong here; give the address alone ({host.strip('[]')})"
    if ":" in text:
        return "it is not a valid IPv6 address"
    if _DOTTED_NUMBERS.fullmatch(text):
        return "it is not a valid IPv4 address (four numbers 0-255 separated by dots)"
    if len(text.rstrip(".")) > 253:
        return "it is longer than 253 characters"
    for label in text.rstrip(".").split("."):
        if not _LABEL.fullmatch(label):
            return f"the label {label!r} is not 1-63 letters, digits or inner '-' (RFC 1123)"
    return None


def check_address(text: str) -> str:
    """`text` when it is an IP address or host name; ValueError naming the value otherwise."""
    problem = address_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} is not an IPv4/IPv6 address or DNS name: {problem}")
    return text


def split_hostport(text: str) -> tuple[str, str] | None:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port text); None without a colon."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return None
    return host.strip("[]") if host.startswith("[") else host, port
