"""Taking a node out of the load balancer for maintenance, and back: what to send. No I/O.

Where the engine has a live control, `rke2ha lb drain NODE` / `lb enable NODE` use it and
reload nothing:

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
  So drain is the config rendered with the node's `server` lines marked `down`, checked
  with nginx's own binary, then a reload: new workers run the new config, the old ones
  stop accepting and finish their open connections (nginx.org/en/docs/control.html,
  "Changing Configuration"), which is a drain.

The drained nodes are kept in the state file (`State.drained`): `up` renders nginx's
config from it, so a later `up` keeps the node down rather than bringing it back.
HAProxy's runtime state is lost on a reload (the new worker reads the config afresh), so
after every reload rke2ha does, the drained nodes are drained again on the new worker
(`keep_drained_steps`, `wrap_reload`). HAProxy's own way, `server-state-file` +
`load-server-state-from-file` with `show servers state` saved before the reload, was not
chosen: the file brings back every server field, addresses and ports included, over the
new config (haproxy/haproxy issue #985: the state file's ports override the config's), so
a spec that moves a node would be undone by its own reload; rke2ha's state file carries
only the drained names.

The server names are the spec's node names (`render/haproxy.py` writes `server NODE ...`),
and the backends that hold a node are read from the rendered config itself, so the list
can never disagree with what HAProxy runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rke2ha.errors import InvalidError, UsageError
from rke2ha.lbhost.decide import Step

Action = Literal["drain", "enable"]
# `enable` is the runtime API's `ready`: back in rotation, subject to its health checks.
HAPROXY_STATES: dict[Action, str] = {"drain": "drain", "enable": "ready"}


def check_node(node: str, names: Sequence[str]) -> None:
    """UsageError naming the valid nodes when `node` is not one of them."""
    if node not in names:
        raise UsageError(f"NODE {node!r} is not a node of the spec; nodes: {', '.join(names)}")


def check_engine(engine: str) -> None:
    """Engines rke2ha cannot drain a node on get a clear error (exit 1)."""
    if engine == "aws-nlb":
        raise InvalidError(
            "load_balancer.engine aws-nlb: deregister the node's target in the target group "
            "(AWS console or `aws elbv2 deregister-targets`); rke2ha has no drain for it"
        )


def drained_after(drained: Sequence[str], node: str, action: Action) -> list[str]:
    """The state's drained nodes after `action` on `node` (sorted, no repeats)."""
    now = set(drained)
    if action == "drain":
        now.add(node)
    else:
        now.discard(node)
    return sorted(now)


_UPSTREAM = re.compile(r"^\s*upstream\s+(\S+)\s*\{", re.MULTILINE)


def nginx_upstreams(config_text: str) -> list[str]:
    """The `upstream` names of an nginx.conf (every one lists every node)."""
    return _UPSTREAM.findall(config_text)


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


# Run on the machine where HAProxy runs, as root. `pid` mode prints the pid of the worker
# that answers on the socket now (nothing when none answers). `apply` mode waits for a
# worker other than OLD (right after a reload the old worker may still pick up a request:
# "when multiple haproxy processes are started on the same sockets, any process may pick
# up the request"), then sends `show info`, the commands and `show servers state` on ONE
# line, so one process runs them all (non-interactive mode takes several commands
# delimited by `;`): haproxy/haproxy doc/management.txt, 9.3 "Unix Socket commands".
# It succeeds once every backend/server named shows the forced-drain admin flag (0x08).
_KEEP_DRAINED = """\
import socket,sys,time
path,mode,old,cmds=sys.argv[1],sys.argv[2],sys.argv[3],sys.argv[4:]
def ask(line):
 s=socket.socket(socket.AF_UNIX);s.settimeout(5);s.connect(path);s.sendall(line.encode()+b'\\n')
 a=b''
 while True:
  d=s.recv(65536)
  if not d: break
  a+=d
 s.close();return a.decode()
def pid(text):
 return next((l.split()[1] for l in text.splitlines() if l.startswith('Pid:')),'')
if mode=='pid':
 try: print(pid(ask('show info')))
 except OSError: print('')
 sys.exit(0)
want={tuple(c.split()[2].split('/',1)) for c in cmds}
end=time.time()+%(timeout)d
seen=''
while True:
 try:
  a=ask(';'.join(['show info',*cmds,'show servers state']));p=pid(a);head=[];got=set()
  for l in a.splitlines():
   f=l.split()
   if l.startswith('# '): head=f[1:]
   elif head and len(f)>=len(head):
    r=dict(zip(head,f))
    if int(r['srv_admin_state'])&8: got.add((r['be_name'],r['srv_name']))
  if p and p!=old and want<=got:
   print('drained again on HAProxy worker '+p);sys.exit(0)
  seen='worker '+(p or '?')+(' (the old one)' if p==old else '')
 except (OSError,ValueError,KeyError) as e: seen=str(e)
 if time.time()>end:
  print('HAProxy did not keep the drained servers after the reload: '+seen);sys.exit(1)
 time.sleep(0.2)
"""
KEEP_DRAINED_TIMEOUT = 20


def keep_drained_script() -> str:
    return _KEEP_DRAINED % {"timeout": KEEP_DRAINED_TIMEOUT}


def worker_pid_command(python: str, socket_path: str) -> str:
    """Prints the pid of the HAProxy worker answering on the socket (empty when none)."""
    return shlex.join([python, "-c", keep_drained_script(), socket_path, "pid", "-"])


def keep_drained_command(
    python: str, socket_path: str, old_pid: str, commands: Sequence[str]
) -> str:
    """Drains again on the worker that replaced `old_pid` (a shell word: `"$OLD"` works)."""
    head = shlex.join([python, "-c", keep_drained_script(), socket_path, "apply"])
    return f"{head} {old_pid} {shlex.join(commands)}"


def drain_commands(config_text: str, drained: Sequence[str]) -> list[str]:
    """The runtime-API commands that drain every node of `drained` on a haproxy.cfg."""
    return [c for node in drained for c in haproxy_commands(config_text, node, "drain")]


def wrap_reload(command: str, python: str, config_text: str, drained: Sequence[str]) -> str:
    """A reload/start/restart shell command of HAProxy that drains `drained` again after
    it: the pid of the worker before, the command, then `keep_drained_command`."""
    commands = drain_commands(config_text, drained)
    path = stats_socket(config_text)
    if not commands or path is None:
        return command
    before = worker_pid_command(python, path)
    after = keep_drained_command(python, path, '"$OLD"', commands)
    return f'OLD=$({before}); [ -n "$OLD" ] || OLD=-; {command} && {after}'


RELOADING_STEPS = ("reload", "restart", "start")
# Waits until each nginx worker pid given has exited or is shutting down (the title its
# graceful quit sets as it closes its listening sockets: src/os/unix/ngx_process_cycle.c,
# ngx_worker_process_cycle). `systemctl reload nginx` returns once the master has the
# signal (`nginx -s reload`), before the old workers stop accepting.
_OLD_WORKERS = """\
import sys,time
end=time.time()+%(timeout)d
while True:
 busy=[]
 for p in sys.argv[1:]:
  try: t=open('/proc/'+p+'/cmdline','rb').read()
  except OSError: continue
  if t and b'shutting down' not in t: busy.append(p)
 if not busy: sys.exit(0)
 if time.time()>end:
  print('nginx workers '+' '.join(busy)+' still accept connections after the reload');sys.exit(1)
 time.sleep(0.1)
"""


def nginx_reload_waits(command: str, unit: str, python: str = "python3") -> str:
    """nginx's reload command followed by the wait for its old workers to stop accepting
    (the master's children before the reload, read from /proc)."""
    script = _OLD_WORKERS % {"timeout": KEEP_DRAINED_TIMEOUT}
    master = f"$(systemctl show -p MainPID --value {shlex.quote(unit)})"
    return (
        f"OLDW=$(cat /proc/{master}/task/*/children 2>/dev/null); {command} && "
        f"{shlex.join([python, '-c', script])} $OLDW"
    )


def keep_drained_steps(
    engine: str,
    steps: Sequence[Step],
    config_text: str,
    drained: Sequence[str],
    unit: str = "",
) -> list[Step]:
    """`lbhost.decide`'s steps for a host or a unit while nodes are drained: HAProxy's
    reload (or start) drains them again on the new worker; nginx's reload (which takes them
    out: its config marks them down) ends once its old workers stopped accepting."""
    if engine == "nginx" and drained and unit:
        wait = " (until its old workers stop accepting)"
        return [
            replace(s, what=s.what + wait, command=nginx_reload_waits(s.command, unit))
            if s.kind == "reload"
            else s
            for s in steps
        ]
    if engine != "haproxy" or not drain_commands(config_text, drained):
        return list(steps)
    also = f" and drain {', '.join(drained)} again (runtime API)"
    return [
        replace(
            s, what=s.what + also, command=wrap_reload(s.command, "python3", config_text, drained)
        )
        if s.kind in RELOADING_STEPS
        else s
        for s in steps
    ]


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
