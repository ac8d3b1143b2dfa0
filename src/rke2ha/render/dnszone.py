"""`dns/<zone>.zone` and `dns/nsupdate.txt`: the Rancher record for operators' own DNS.

The records come from `rke2ha.dns.records.desired_records` (the same A/AAAA or CNAME and
ownership TXT every DNS provider publishes) and the zone text from `rke2ha.dns.zone`, so a
rendered zone says exactly what the built-in server serves. Around the records sits a
minimal zone (SOA, NS and the nameserver's address) that `named-checkzone` accepts; in an
existing zone only the record lines matter.

nsupdate.txt creates the records with RFC 2136 prerequisites (`prereq nxdomain`): it never
overwrites a hostname someone else already holds. The TSIG secret is never written into
it: nsupdate reads the key from a file given with `-k`.

With `dns.builtin.transfer_key`, `dns/named-secondary.conf` holds the key and zone clauses
of a BIND secondary that follows `rke2ha dns serve` (the secret left as a placeholder).
"""

from __future__ import annotations

import ipaddress
import shlex

import dns.name

from rke2ha.addresses import is_ip
from rke2ha.dns.records import DesiredRecords, desired_records
from rke2ha.dns.zone import ZoneSettings, settings_from_spec, split_host_port, zone_from_records
from rke2ha.render.common import commented, header_lines
from rke2ha.spec import Spec

ZONE_SERIAL = 1
# RFC 5737 TEST-NET-1: a nameserver address nobody can mistake for a real one.
PLACEHOLDER_NS_ADDRESS = "192.0.2.53"


def _nameserver_address(spec: Spec, nameserver: dns.name.Name) -> tuple[str | None, bool]:
    """(address for the nameserver's glue, whether it is a placeholder)."""
    zone = dns.name.from_text(spec.dns.zone)
    if not nameserver.is_subdomain(zone):
        return None, False
    rfc2136 = spec.dns.rfc2136
    if spec.dns.provider == "rfc2136" and rfc2136 is not None and is_ip(rfc2136.server):
        return str(ipaddress.ip_address(rfc2136.server)), False
    if spec.dns.provider == "builtin" and spec.dns.builtin.listen:
        host = split_host_port(spec.dns.builtin.listen, 53)[0]
        if is_ip(host) and not ipaddress.ip_address(host).is_unspecified:
            return host, False
    return PLACEHOLDER_NS_ADDRESS, True


def _settings(spec: Spec) -> tuple[ZoneSettings, bool]:
    base = settings_from_spec(spec, ZONE_SERIAL)
    address, placeholder = _nameserver_address(spec, base.nameserver)
    return ZoneSettings(base.nameserver, address, ZONE_SERIAL), placeholder


def zone_file_name(spec: Spec) -> str:
    return f"dns/{spec.dns.zone.rstrip('.').lower()}.zone"


def render_zone(spec: Spec, spec_label: str) -> str:
    desired = desired_records(spec)
    settings, placeholder = _settings(spec)
    zone = zone_from_records(desired, settings, spec.dns.ttl)
    notes = [
        *header_lines(
            spec_label, f"zone {desired.zone.rstrip('.')} with the Rancher record {spec.hostname}"
        ),
        "In an existing zone, add only the record lines for the hostname and _rke2ha "
        "(the ownership TXT naming this cluster); SOA and NS frame the file for named-checkzone.",
    ]
    if placeholder:
        notes.append(
            f"{PLACEHOLDER_NS_ADDRESS} (TEST-NET-1) stands in for the nameserver's address, "
            "which the spec does not give."
        )
    return "\n".join([*commented(notes, ";"), f"$TTL {spec.dns.ttl}", zone.to_text()])


def _server_lines(spec: Spec) -> list[str]:
    rfc2136 = spec.dns.rfc2136
    if spec.dns.provider == "rfc2136" and rfc2136 is not None:
        return [f"server {rfc2136.server} {rfc2136.port}"]
    return [
        f"; dns.provider is {spec.dns.provider}: add `server <primary> <port>` here, or nsupdate",
        "; sends the update to the primary named in the zone's SOA.",
    ]


def _key_notes(spec: Spec) -> list[str]:
    rfc2136 = spec.dns.rfc2136
    if rfc2136 is None:
        return ["Sign the update with your TSIG key: nsupdate -k KEYFILE nsupdate.txt"]
    key_file = spec.resolve(rfc2136.key_file)
    return [
        f"Signed with TSIG key {rfc2136.key_name} ({rfc2136.algorithm}); its secret stays in "
        f"{key_file} and never in this file. Run (one line):",
    ]


def _key_command(spec: Spec) -> list[str]:
    """The command that signs the update without putting the secret on a command line.

    A subshell, so the exit status is nsupdate's and the temporary key file is removed
    whatever happens.
    """
    rfc2136 = spec.dns.rfc2136
    if rfc2136 is None:
        return []
    key_file = shlex.quote(str(spec.resolve(rfc2136.key_file)))
    key_statement = 'key "%s" { algorithm %s; secret "%s"; };\\n'
    return [
        f"; ( k=$(mktemp) && trap 'rm -f \"$k\"' EXIT && printf '{key_statement}' "
        f'{rfc2136.key_name} {rfc2136.algorithm} "$(cat {key_file})" > "$k" '
        '&& nsupdate -k "$k" nsupdate.txt )'
    ]


def update_lines(desired: DesiredRecords) -> list[str]:
    """prereq + update lines: create the records only where the names do not exist yet."""
    lines = [f"prereq nxdomain {desired.hostname}", f"prereq nxdomain {desired.owner.name}"]
    for record in desired.all:
        lines += [f"update add {line}" for line in record.zone_lines()]
    return lines


def render_nsupdate(spec: Spec, spec_label: str) -> str:
    desired = desired_records(spec)
    notes = [
        *header_lines(
            spec_label, f"RFC 2136 update creating {spec.hostname} in {desired.zone.rstrip('.')}"
        ),
        "prereq nxdomain: the update fails, changing nothing, when the hostname or its "
        "ownership TXT already exists (someone else's record, or an earlier run).",
        *_key_notes(spec),
    ]
    lines = [
        *commented(notes, ";"),
        *_key_command(spec),
        *_server_lines(spec),
        f"zone {desired.zone}",
        *update_lines(desired),
        "send",
    ]
    return "\n".join(lines) + "\n"


def _primary_address(spec: Spec) -> tuple[str, int, bool]:
    """(address, port, whether a placeholder) of `dns serve` as the secondary reaches it."""
    host, port = split_host_port(spec.dns.builtin.listen or "0.0.0.0:53", 53)
    if is_ip(host) and not ipaddress.ip_address(host).is_unspecified:
        return host, port, False
    return PLACEHOLDER_NS_ADDRESS, port, True


def render_secondary(spec: Spec, spec_label: str) -> str:
    """named.conf lines for a BIND secondary of `dns serve` signed with the transfer key.

    BIND 9 ARM: a `type secondary` zone transfers from `primaries { ADDRESS port P key K; }`
    and, by default, takes NOTIFY from those addresses. The secret is never written here."""
    key = spec.dns.builtin.transfer_key
    assert key is not None
    address, port, placeholder = _primary_address(spec)
    zone = spec.dns.zone.rstrip(".").lower()
    notes = [
        *header_lines(spec_label, f"a BIND secondary of zone {zone} following `rke2ha dns serve`"),
        f"Put the base64 secret from {spec.resolve(key.key_file)} in place of SECRET, or keep "
        "the key clause in a file of its own (mode 0600) and `include` it.",
    ]
    if placeholder:
        notes.append(
            f"{PLACEHOLDER_NS_ADDRESS} (TEST-NET-1) stands in for the primary's address: "
            "dns.builtin.listen does not give one."
        )
    lines = [
        *commented(notes, "//"),
        f'key "{key.name}" {{ algorithm {key.algorithm}; secret "SECRET"; }};',
        f'zone "{zone}" {{',
        "    type secondary;",
        f'    file "{zone}.db";',
        f'    primaries {{ {address} port {port} key "{key.name}"; }};',
        "};",
    ]
    return "\n".join(lines) + "\n"


def dns_files(spec: Spec, spec_label: str) -> dict[str, str]:
    files = {
        zone_file_name(spec): render_zone(spec, spec_label),
        "dns/nsupdate.txt": render_nsupdate(spec, spec_label),
    }
    if spec.dns.builtin.transfer_key is not None:
        files["dns/named-secondary.conf"] = render_secondary(spec, spec_label)
    return files
