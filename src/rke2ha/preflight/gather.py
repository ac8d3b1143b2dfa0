"""The one read-only script each node runs, and the splitting of its output by section.

Each section starts with a marker line `@@rke2ha <name>`; a command missing on the node
leaves its section empty, which the parsers read as "not there". Nothing here writes.
"""

from __future__ import annotations

MARK = "@@rke2ha "

# Units whose state the checks need (systemctl is-active / is-enabled).
# rke2-server: on a node where RKE2 already runs, its ports are its own (check_ports).
UNITS = (
    "firewalld",
    "NetworkManager",
    "nm-cloud-setup.service",
    "nm-cloud-setup.timer",
    "rke2-server",
)

_SECTIONS = {
    "arch": "uname -m",
    "nproc": "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN",
    "meminfo": "cat /proc/meminfo",
    "hostname": "hostname",
    "os": "cat /etc/os-release 2>/dev/null",
    "pid1": "cat /proc/1/comm",
    "listen": "ss -Hltunp 2>/dev/null || ss -Hltun",
    "units": (
        f"for u in {' '.join(UNITS)}; do "
        'printf "%s %s %s\\n" "$u" "$(systemctl is-active "$u" 2>/dev/null | head -n1)" '
        '"$(systemctl is-enabled "$u" 2>/dev/null | head -n1)"; done'
    ),
    "nmconf": (
        "for f in /etc/NetworkManager/NetworkManager.conf /etc/NetworkManager/conf.d/*.conf "
        '/run/NetworkManager/conf.d/*.conf; do [ -f "$f" ] && cat "$f"; done 2>/dev/null'
    ),
    "selinux": "cat /sys/fs/selinux/enforce 2>/dev/null",
    "rke2_selinux": "rpm -q rke2-selinux 2>/dev/null",
    "apparmor": "cat /sys/module/apparmor/parameters/enabled 2>/dev/null",
    "apparmor_parser": (
        "command -v apparmor_parser 2>/dev/null || "
        "ls /sbin/apparmor_parser /usr/sbin/apparmor_parser 2>/dev/null"
    ),
    "timesync": "timedatectl show -p NTPSynchronized --value 2>/dev/null",
    "swaps": "cat /proc/swaps",
    "route": "ip -4 route show default 2>/dev/null; ip -6 route show default 2>/dev/null",
    # The pair probes are Python programs (rke2ha.preflight.pairs); RHEL keeps one here.
    "python": "command -v python3 2>/dev/null || ls /usr/libexec/platform-python 2>/dev/null",
}


def script() -> str:
    """The shell script: every section's command after its marker."""
    return "".join(f"echo '{MARK}{name}'\n{command}\n" for name, command in _SECTIONS.items())


def split(output: str) -> dict[str, str]:
    """Section name -> its text (only the sections the output has)."""
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(MARK):
            if current is not None:
                sections[current] = "\n".join(lines)
            current, lines = line[len(MARK) :].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines)
    return sections
