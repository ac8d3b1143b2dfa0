"""DNS name and address helpers for the rules: pure string checks, no resolving."""

from __future__ import annotations

import ipaddress
import re

from rke2ha.addresses import is_ip

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# AWS availability zone names: region + one letter (us-east-1a, us-gov-west-1b).
_AWS_ZONE = re.compile(r"^([a-z]{2}(?:-[a-z]+)+-\d+)([a-z])$")


def is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def hostname_problem(name: str, zone: str = "example.com") -> tuple[str, str] | None:
    """Why `name` cannot be an ingress host / Rancher server URL host: (message, fix).

    `zone` only shapes the suggested fix for a single-label name.
    """
    if not name:
        return "is empty", "set it to the DNS name users will type, e.g. rancher.example.com"
    if "://" in name or "/" in name:
        host = name.split("://", 1)[-1].split("/", 1)[0]
        return (
            "is a URL; give the host name, not a URL (drop https:// and the path)",
            f"write only the host name: {host}" if host else "write only the host name",
        )
    if is_ip(name):
        return (
            "is an IP address; Rancher's server URL and its Ingress need a DNS name",
            "use a DNS name (e.g. rancher.example.com) and point its record at the address",
        )
    if name.endswith("."):
        return "ends with a dot", f"write it without the trailing dot: {name.rstrip('.')}"
    if not name.isascii():
        try:
            ascii_name = name.encode("idna").decode()
        except UnicodeError:
            ascii_name = "its punycode (xn--...) form"
        return "is not ASCII; an Ingress host must be", f"use the A-label form: {ascii_name}"
    if name != name.lower():
        return "has capital letters; an Ingress host must be lowercase", f"use {name.lower()}"
    labels = name.split(".")
    if "*" in name:
        return (
            "is a wildcard; Rancher needs one exact hostname",
            "name the one host users will type, e.g. rancher.example.com",
        )
    if len(labels) < 2:
        return (
            "is a single label; downstream clusters and browsers need a fully qualified name",
            f"add the domain: {name}.{zone.rstrip('.')}",
        )
    if len(name) > 253:
        return "is longer than 253 characters", "use a shorter name"
    for label in labels:
        if not _LABEL.match(label):
            return (
                f"has the label {label!r}: labels are 1-63 letters, digits or '-' "
                "and neither start nor end with '-'",
                "rename it using letters, digits and inner hyphens only",
            )
    if labels[-1].isdigit():
        return "ends in an all-numeric label", "use a real top-level domain"
    return None


def in_zone(name: str, zone: str) -> bool:
    """Is `name` the zone apex or a name below it?"""
    host, apex = name.rstrip(".").lower(), zone.rstrip(".").lower()
    return host == apex or host.endswith("." + apex)


def aws_zone_region(zone: str) -> str | None:
    """The region of an AWS availability zone name (`us-east-1a` -> `us-east-1`)."""
    match = _AWS_ZONE.match(zone)
    return match.group(1) if match else None
