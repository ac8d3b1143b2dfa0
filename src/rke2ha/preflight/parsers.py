"""One parser per section of the gather script's output (sans-I/O; tests feed them output
taken from real machines). Each returns a plain value, or None when the section says
nothing (the command is missing on that node)."""

from __future__ import annotations

import re
from dataclasses import dataclass


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def integer(text: str) -> int | None:
    line = first_line(text)
    return int(line) if line.isdigit() else None


def meminfo_total(text: str) -> int | None:
    """MemTotal of /proc/meminfo, in bytes (the file counts kB of 1024 bytes)."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def os_release(text: str) -> str:
    """PRETTY_NAME of /etc/os-release (os-release(5)), else NAME VERSION_ID, else ""."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    if "PRETTY_NAME" in values:
        return values["PRETTY_NAME"]
    return " ".join(v for v in (values.get("NAME"), values.get("VERSION_ID")) if v)


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp | udp
    address: str  # as ss prints it: 0.0.0.0, [::], 127.0.0.53%lo, *
    port: int
    process: str  # "sshd (pid 123)", or "" when ss could not say


_USERS = re.compile(r'users:\(\("([^"]*)",pid=(\d+)')


def listeners(text: str) -> list[Listener]:
    """`ss -Hltunp`: one line per listening TCP socket or bound UDP socket."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] not in ("tcp", "udp"):
            continue
        local = fields[4]
        address, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        users = _USERS.search(line)
        process = f"{users.group(1)} (pid {users.group(2)})" if users else ""
        found.append(Listener(fields[0], address, int(port), process))
    return found


@dataclass(frozen=True)
class UnitState:
    active: str  # active | inactive | failed | ... ; "" when systemctl said nothing
    enabled: str  # enabled | disabled | masked | static | not-found | ""

    @property
    def running(self) -> bool:
        return self.active in ("active", "activating", "reloading")

    @property
    def will_start(self) -> bool:
        """Starts at boot (or is started now): enabled units and running ones."""
        return self.running or self.enabled in ("enabled", "enabled-runtime", "alias")

    @property
    def installed(self) -> bool:
        return self.enabled not in ("", "not-found") or self.active not in ("", "inactive")


def units(text: str) -> dict[str, UnitState]:
    """`<unit> <is-active> <is-enabled>` lines."""
    states = {}
    for line in text.splitlines():
        fields = line.split()
        if fields:
            fields += ["", ""]
            states[fields[0]] = UnitState(fields[1], fields[2])
    return states


def nm_unmanaged(text: str) -> list[str]:
    """`unmanaged-devices` specs of [keyfile] sections (NetworkManager.conf(5)), in order;
    a later file's value replaces an earlier one's, as NetworkManager merges them."""
    section = ""
    value: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == "keyfile" and "=" in line and not line.startswith(("#", ";")):
            key, _, spec = line.partition("=")
            if key.strip() == "unmanaged-devices":
                value = [s.strip() for s in spec.replace(",", ";").split(";") if s.strip()]
    return value


def selinux(text: str) -> str:
    """`/sys/fs/selinux/enforce`: 1 enforcing, 0 permissive, absent disabled."""
    return {"1": "enforcing", "0": "permissive"}.get(first_line(text), "disabled")


def yes_no(text: str) -> bool | None:
    line = first_line(text).lower()
    if line in ("y", "yes", "1", "true"):
        return True
    if line in ("n", "no", "0", "false"):
        return False
    return None


@dataclass(frozen=True)
class Swap:
    name: str
    kind: str
    size_kib: int
    used_kib: int


def swaps(text: str) -> list[Swap]:
    """/proc/swaps: a header, then `Filename Type Size Used Priority` (sizes in KiB)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
            found.append(Swap(fields[0], fields[1], int(fields[2]), int(fields[3])))
    return found


def default_routes(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("default")]
