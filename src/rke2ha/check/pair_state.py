"""What one load balancer host of a keepalived pair shows: the read-only script and its parser.

No I/O: `view_script` is the shell text `pair_probe` runs on each host over SSH, and
`parse_view` turns its output into a `HostView` (plain data for `verdicts_pair`). One
script, one SSH command per host, four sections:

- `ip -o addr show dev IF`: one line per address of the VRRP interface; the host holds the
  virtual IP when one reads `inet VIP/..` (keepalived adds the address there as MASTER
  and removes it in BACKUP and FAULT: keepalived.conf(5), `virtual_ipaddress`).
- `systemctl is-active keepalived.service <engine's unit>`: one line per unit, in order (the
  unit is `load_balancer.engine`'s packaged one, `lbhost.decide.ENGINES`).
- keepalived's last state change from its journal: it logs `(<instance>) Entering MASTER
  STATE` (and BACKUP, FAULT) on every transition (acassen/keepalived,
  keepalived/vrrp/vrrp.c; the same strings are in Debian bookworm's 2.2.7 binary). The
  rendered config writes no notify/state file, so the journal is where the state is.
- HAProxy's `show stat` on its runtime API (the stats socket): CSV with `# pxname,svname,`
  as header; field 0 is the backend, 1 the server, 17 its status (UP, DOWN, `UP 1/2`
  going down, `DOWN 1/2` going up, NOLB, MAINT, DRAIN, `no check`). Source: HAProxy
  management guide, "show stat" and "9.1. CSV format", `17. status [LFBS]` (haproxy/haproxy
  doc/management.txt; Debian's /usr/share/doc/haproxy/management.txt for 2.6).
  Open-source nginx has no such API (`render.keepalived.track_command` gives the sources):
  with nginx the section is empty and the view says the per-node state is not available.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from rke2ha.lbhost.decide import ENGINES
from rke2ha.maintenance import remote_socket_command

KEEPALIVED_UNIT = "keepalived.service"
# The engines whose per-node state the host script can read (HAProxy's `show stat`).
NODE_STATE_ENGINES = ("haproxy",)
NO_NODE_STATE = "per-node state: not available from {engine}"
# How far back the journal is read for the last VRRP transition.
JOURNAL_LINES = 300
_SECTIONS = ("addr", "units", "vrrp", "stat")
_MARK = "==rke2ha-pair "
_TRANSITION = re.compile(r"Entering (MASTER|BACKUP|FAULT) STATE")
STATUS_FIELD = 17  # `show stat` CSV: field 17 is the server's status


@dataclass(frozen=True)
class HostView:
    """One host as the script saw it. `error` set: nothing else is known."""

    name: str
    error: str | None = None
    holds_vip: bool = False
    keepalived: str = "unknown"  # `systemctl is-active`: active, inactive, failed, ...
    engine: str = "unknown"  # the engine unit's `systemctl is-active`
    engine_name: str = "haproxy"  # `load_balancer.engine`
    vrrp_state: str | None = None  # MASTER, BACKUP or FAULT; None: no transition logged
    # backend -> server -> HAProxy status (`show stat` field 17); empty when unread.
    servers: dict[str, dict[str, str]] = field(default_factory=dict)
    stat_error: str | None = None  # why `show stat` gave nothing

    @property
    def reached(self) -> bool:
        return self.error is None

    @property
    def engine_unit(self) -> str:
        return ENGINES[self.engine_name].unit

    @property
    def node_state(self) -> bool:
        """Whether the engine tells each node's state (`servers`)."""
        return self.engine_name in NODE_STATE_ENGINES


def view_script(interface: str, socket_path: str | None, engine: str = "haproxy") -> str:
    """The read-only script: four marked sections; never fails as a whole. `socket_path`:
    HAProxy's stats socket (None: the engine has none, the section stays empty)."""
    unit = ENGINES[engine].unit
    stat = remote_socket_command(socket_path, ["show stat"]) if socket_path else "true"
    journal = (
        f"journalctl -u {KEEPALIVED_UNIT} -n {JOURNAL_LINES} --no-pager -o cat 2>/dev/null"
        " | grep -E 'Entering (MASTER|BACKUP|FAULT) STATE' | tail -n 1"
    )
    parts = {
        "addr": f"ip -o addr show dev {shlex.quote(interface)} 2>&1",
        "units": f"systemctl is-active {KEEPALIVED_UNIT} {shlex.quote(unit)} 2>&1",
        "vrrp": journal,
        "stat": f"{stat} 2>&1",
    }
    return "; ".join(f"echo '{_MARK}{name}'; {parts[name]}" for name in _SECTIONS) + "; true"


def _sections(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_MARK):
            current = found.setdefault(line[len(_MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    return found


def holds_address(addr_lines: list[str], address: str) -> bool:
    """True when an `ip -o addr` line carries `address` (`inet A/len` or `inet6 A/len`)."""
    wanted = re.compile(rf"\binet6? {re.escape(address)}/")
    return any(wanted.search(line) for line in addr_lines)


def parse_show_stat(lines: list[str]) -> dict[str, dict[str, str]]:
    """backend -> server -> status from `show stat` CSV (FRONTEND/BACKEND rows left out)."""
    servers: dict[str, dict[str, str]] = {}
    for line in lines:
        if not line or line.startswith("#") or line.startswith(">"):
            continue
        cells = line.split(",")
        if len(cells) <= STATUS_FIELD or cells[1] in ("FRONTEND", "BACKEND"):
            continue
        servers.setdefault(cells[0], {})[cells[1]] = cells[STATUS_FIELD]
    return servers


def _stat_error(lines: list[str]) -> str | None:
    if any(line.startswith("# pxname") for line in lines):
        return None
    said = [line.strip() for line in lines if line.strip() and not line.startswith(">")]
    return said[-1] if said else "no answer"


def parse_view(name: str, text: str, address: str, engine: str = "haproxy") -> HostView:
    """`view_script`'s output on host `name`; `address` is the virtual IP."""
    sections = _sections(text)
    missing = [s for s in _SECTIONS if s not in sections]
    if missing:
        return HostView(name, error=f"its output lacks {', '.join(missing)}: {text[-200:]!r}")
    units = [line.strip() for line in sections["units"] if line.strip()]
    transitions = [m.group(1) for line in sections["vrrp"] if (m := _TRANSITION.search(line))]
    stat_lines = sections["stat"]
    keepalived = units[0] if units else "unknown"
    # A stopped keepalived's last logged state is history, not its state.
    running = keepalived == "active" and transitions
    return HostView(
        name=name,
        holds_vip=holds_address(sections["addr"], address),
        keepalived=keepalived,
        engine=units[1] if len(units) > 1 else "unknown",
        engine_name=engine,
        vrrp_state=transitions[-1] if running else None,
        servers=parse_show_stat(stat_lines) if engine in NODE_STATE_ENGINES else {},
        stat_error=(
            _stat_error(stat_lines)
            if engine in NODE_STATE_ENGINES
            else NO_NODE_STATE.format(engine=engine)
        ),
    )
