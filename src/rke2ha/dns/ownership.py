"""Whose record is it: the ownership TXT and the rules that follow from it.

The marker lives at its own name, `_rke2ha.<hostname>`, because a TXT beside a CNAME is
illegal (RFC 1034 §3.6.2). Its value names the cluster (`spec.name`), the way
external-dns marks its records. A publisher changes or deletes the hostname's records only
while the marker holds our value; a record without it belongs to someone else and is
left alone unless the operator adopts it on purpose (`--adopt`).
"""

from __future__ import annotations

from enum import StrEnum

OWNERSHIP_LABEL = "_rke2ha"


def ownership_name(hostname: str) -> str:
    """The name of the ownership TXT for `hostname` (absolute, with trailing dot)."""
    return f"{OWNERSHIP_LABEL}.{hostname.rstrip('.').lower()}."


def ownership_value(cluster: str) -> str:
    """The TXT string (without quotes) that marks a record as this cluster's."""
    return f"heritage=rke2ha,rke2ha/cluster={cluster}"


def txt_strings(values: tuple[str, ...]) -> set[str]:
    """The unquoted strings of TXT rdata texts (`"a" "b"` joins to `ab`, as TXT does)."""
    strings = set()
    for value in values:
        parts = [part for part in value.split('"') if part.strip()]
        strings.add("".join(parts) if parts else value)
    return strings


class Ownership(StrEnum):
    """Who holds the hostname, judged from what the zone shows."""

    FREE = "free"  # neither records nor marker: we may create
    OURS = "ours"  # our marker is there: we may change and delete
    FOREIGN = "foreign"  # records without any rke2ha marker: someone else made them
    OTHER_CLUSTER = "other-cluster"  # a marker naming another rke2ha cluster


def judge(has_records: bool, marker_values: tuple[str, ...], cluster: str) -> Ownership:
    """Ownership from the hostname's address records and the marker's TXT values."""
    strings = txt_strings(marker_values)
    if ownership_value(cluster) in strings:
        return Ownership.OURS
    if any(s.startswith("heritage=rke2ha,") for s in strings):
        return Ownership.OTHER_CLUSTER
    if has_records or strings:
        return Ownership.FOREIGN
    return Ownership.FREE
