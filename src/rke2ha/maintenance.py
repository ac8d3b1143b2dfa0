"""Taking a node out of the load balancer for maintenance, and back: what to send. No I/O.

`rke2ha lb drain NODE` / `lb enable NODE` must not reload anything: a reload of HAProxy
starts new workers and the old ones keep their connections, but the node would come back
on the next reload of a config that still lists it. The engines' live controls are used:

- HAProxy: its runtime API on the stats socket (`stats socket ... level admin` in the
  rendered global section). `set server <backend>/<server> state drain` stops new
  connections and lets the open ones finish; `state maint` also takes it out of checks;
  `state ready` puts it back. Health checks keep running in `drain`, but a passing check
  never changes an administrative state, so the node stays out until `ready`.
  Source: HAProxy's management guide, `set server <backend>/<server> state [ ready |
  drain | maint ]` and `show servers state` (haproxy/haproxy, doc/management.txt; also
  docs.haproxy.org). Checked live: tests/existing/test_maintenance_live.py.
- The built-in load balancer: `POST /nodes/NODE/drain|enable` on its admin endpoint.
- nginx (open source) has no runtime API: `upstream` servers change only by a reload.

The server names are the spec's node names (`render/haproxy.py` writes `server NODE ...`),
and the backends that hold a node are read from the rendered config itself, so the list
can never disagree with what HAProxy runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rke2ha.errors import InvalidError, UsageError

Action = Literal["drain", "enable"]
# `enable` is the runtime API's `ready`: back in rotation, subject to its health checks.
HAPROXY_STATES: dict[Action, str] = {"drain": "drain", "enable": "ready"}


def check_node(node: str, names: Sequence[str]) -> None:
    """UsageError naming the valid nodes when `node` is not one of them."""
    if node not in names:
        raise UsageError(f"NODE {node!r} is not a node of the spec; nodes: {', '.join(names)}")


def check_engine(engine: str) -> None:
    """Engines without a live control get a clear error (exit 1), not a silent reload."""
    if engine == "nginx":
        raise InvalidError(
            "load_balancer.engine nginx: open source nginx has no runtime API, so a node can "
            "only be taken out by editing the upstream and reloading; use engine haproxy or "
            "builtin for `lb drain` / `lb enable`"
        )
    if engine == "aws-nlb":
        raise InvalidError(
            "load_balancer.engine aws-nlb: deregister the node's target in the target group "
            "(AWS console or `aws elbv2 deregister-targets`); rke2ha has no drain for it"
        )


_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|resolvers|peers)\b\s*(\S*)")
_SERVER = re.compile(r"^\s+server\s+(\S+)\s")


def haproxy_backends(config_text: str, node: str) -> list[str]:
    """The backends (and `listen` sections) of a haproxy.cfg with a `server NODE` line."""
    found: list[str] = []
    section: str | None = None
    for line in config_text.splitlines():
        head = _SECTION.match(line)
        if head is not None:
            kind, name = head.groups()
            section = name if kind in ("backend", "listen") else None
            continue
        server = _SERVER.match(line)
        named = server is not None and server.group(1) == node
        if section is not None and named and section not in found:
            found.append(section)
    return found


def haproxy_commands(config_text: str, node: str, action: Action) -> list[str]:
    """The runtime-API commands that move `node` to the action's state on every backend."""
    state = HAPROXY_STATES[action]
    return [
        f"set server {backend}/{node} state {state}"
        for backend in haproxy_backends(config_text, node)
    ]


_STATS_SOCKET = re.compile(r"^\s*stats\s+socket\s+(\S+)", re.MULTILINE)


def stats_socket(config_text: str) -> str | None:
    """The path of the first `stats socket` of a haproxy.cfg (None when it has none)."""
    found = _STATS_SOCKET.search(config_text)
    return found.group(1) if found else None


@dataclass(frozen=True)
class ServerState:
    backend: str
    server: str
    operational: int  # srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping
    admin: int  # srv_admin_state: bit flags; 0x08 FDRAIN (forced drain), 0x01 FMAINT

    @property
    def drained(self) -> bool:
        return bool(self.admin & 0x08)

    @property
    def in_maintenance(self) -> bool:
        return bool(self.admin & 0x01)


def parse_servers_state(text: str) -> list[ServerState]:
    """`show servers state` output: a version line, a `# be_id be_name ...` header, rows."""
    header: list[str] = []
    rows: list[ServerState] = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
            continue
        fields = line.split()
        if not header or len(fields) < len(header):
            continue
        row = dict(zip(header, fields, strict=False))
        rows.append(
            ServerState(
                row["be_name"],
                row["srv_name"],
                int(row["srv_op_state"]),
                int(row["srv_admin_state"]),
            )
        )
    return rows


def remote_socket_command(socket_path: str, commands: Sequence[str]) -> str:
    """A shell command for an LB host: send each command to the socket with python3.

    Debian's haproxy package ships no socket client (no socat dependency); python3 is on
    the hosts. Each command gets its own connection, its answer is printed after a `> `
    line, and a non-empty answer (HAProxy's way of reporting an error for `set server`)
    makes the exit status 1.
    """
    script = (
        "import socket,sys\n"
        "bad=0\n"
        "for c in sys.argv[2:]:\n"
        " s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);s.sendall(c.encode()+b'\\n')\n"
        " a=b''\n"
        " while True:\n"
        "  d=s.recv(65536)\n"
        "  if not d: break\n"
        "  a+=d\n"
        " s.close();t=a.decode().strip();print('> '+c);t and print(t);bad|=bool(t)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    return shlex.join(["python3", "-c", script, socket_path, *commands])
