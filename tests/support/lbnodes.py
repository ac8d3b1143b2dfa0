"""For the live tests of `load_balancer.hosts`: what the nodes serve, what a machine
holds, and requests through the load balancer from the workstation."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.certs import write_self_signed
from tests.support.machines import Machine, Testbed

NODES = ("node-1", "node-2", "node-3")


def nodes(bed: Testbed) -> list[Machine]:
    return [bed.machine(n) for n in NODES]


# The first RKE2 server before its ingress runs: 9345 `/ping` -> pong (the supervisor,
# k3s-io/k3s pkg/server/router.go: `ping` handler), 6443 `/readyz` -> 401 for an anonymous
# caller (RKE2 turns anonymous auth off; rke2ha.healthplan). Both over TLS.
BOOTSTRAP_SERVER = """\
import http.server, socket, ssl, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        port = self.server.server_address[1]
        if port == 9345 and self.path == "/ping":
            status, body = 200, b"pong"
        elif port == 6443:
            status, body = 401, b'{"kind":"Status","code":401}'
        else:
            status, body = 404, b"404 page not found"
        self.send_response(status)
        self.send_header("X-Node", socket.gethostname())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
if sys.argv[3:] == ["keep-alive"]:  # answer more than one request per connection
    Handler.protocol_version = "HTTP/1.1"
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
servers = []
for port in (9345, 6443):
    server = http.server.ThreadingHTTPServer(("", port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    servers.append(server)
threading.Thread(target=servers[0].serve_forever, daemon=True).start()
servers[1].serve_forever()
"""
SERVER_UNIT = "rke2ha-lbtest-bootstrap"
_runs = itertools.count(1)


@contextlib.contextmanager
def python_on_nodes(
    bed: Testbed, unit: str, folder: str, files: dict[str, str], args: tuple[str, ...] = ()
) -> Iterator[None]:
    """`python3 <folder>/<first file> <folder>/<the others>... <args>` on every node as a
    transient unit named `unit-<n>` (bounded to 15 minutes), the files 0600 in `folder`;
    stopped and removed after."""
    name = f"{unit}-{next(_runs)}"
    paths = [f"{folder}/{file}" for file in files]
    for machine in nodes(bed):
        machine.sh(f"mkdir -p -m 700 {folder}", check=True)
        for path, text in zip(paths, files.values(), strict=True):
            machine.sh(f"umask 077 && cat > {path}", input=text, check=True)
        started = machine.sh(
            f"systemd-run --collect --unit={name} -p RuntimeMaxSec=900 python3 "
            + " ".join([*paths, *args])
        )
        assert started.returncode == 0, (machine.name, started.stderr)
    try:
        yield
    finally:
        for machine in nodes(bed):
            machine.sh(f"systemctl stop {name}; rm -rf {folder}")
            assert machine.sh(f"systemctl is-active {name}").stdout.strip() != "active"


def bootstrap_servers(
    bed: Testbed, tmp: Path, keep_alive: bool = False
) -> contextlib.AbstractContextManager[None]:
    """BOOTSTRAP_SERVER on every node (bounded to 15 minutes), stopped and removed after;
    `keep_alive`: HTTP/1.1 connections that stay open between requests."""
    cert, key = write_self_signed(tmp / "node.crt", tmp / "node.key", "node.rke2ha.test")
    files = {"server.py": BOOTSTRAP_SERVER, "crt": cert.read_text(), "key": key.read_text()}
    args = ("keep-alive",) if keep_alive else ()
    return python_on_nodes(bed, SERVER_UNIT, "/run/rke2ha-lbtest", files, args)


def listing(machine: Machine) -> list[str]:
    """Everything `down` must leave as it found it, one line per item."""
    script = (
        "dpkg-query -W -f='pkg ${Package} ${Version} ${Status}\\n'; "
        "systemctl list-unit-files --no-legend --no-pager | awk '{print \"unitfile\", $1, $2}'; "
        # Every file under /etc with its digest, every link with its target (/etc/mtab
        # points into /proc: its content changes with every mount).
        "find /etc -xdev -type f -exec sha256sum {} + | awk '{print \"etc\", $2, $1}'; "
        "find /etc -xdev -type l -printf 'link %p %l\\n'; "
        # A login's user manager lingers a few seconds after the session (rke2ha's SSH).
        "systemctl list-units --type=service --state=active --no-legend --plain --no-pager "
        "| awk '$1 !~ /^user(-runtime-dir)?@/ {print \"running\", $1}'; "
        "ip -4 -o addr show | awk '{print \"addr\", $2, $4}'"
    )
    done = machine.sh(script, timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.splitlines())


def wait_active(machine: Machine, units: tuple[str, ...], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        states = machine.sh(f"systemctl is-active {' '.join(units)}").stdout.split()
        if states == ["active"] * len(units):
            break
        time.sleep(0.2)
    return states


def through(bed: Testbed, address: str, port: int, path: str) -> tuple[str, str]:
    """(status + body, node) of one HTTPS request to `address` from the workstation."""
    done = bed.workstation.run(
        ["curl", "-sk", "--max-time", "5", "-D", "-", f"https://{address}:{port}{path}"], timeout=15
    )
    lines = done.stdout.splitlines()
    node = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("x-node")),
                "")  # fmt: skip
    status = lines[0].split(" ")[1] if lines else done.stderr.strip()
    return f"{status} {lines[-1] if lines else ''}".strip(), node


# Run inside the workstation namespace: the SSH adapter given a config the engine rejects,
# as `up` would run it (argv: spec, host, engine, config). Exit 3 with the error and the
# steps that ran.
REJECTED = """\
import sys
from rke2ha.lbhost import remote
from rke2ha.lbhost.decide import ENGINES, Record, up_steps
from rke2ha.specfile import load_spec
from rke2ha.ssh.target import host_targets
spec_file, host, name, bad = sys.argv[1:5]
target = next(t for t in host_targets(load_spec(spec_file)) if t.node == host)
engine = ENGINES[name]
previous = Record(name, False, True, True, False, "")
try:
    remote.run(target, engine, lambda f: up_steps(engine, f, bad, previous)[0], print)
except remote.StepFailed as err:
    print("ERROR:", err)
    print("DONE:", " ".join(s.kind for s in err.done))
    sys.exit(3)
"""


def rejected(bed: Testbed, spec: Path, host: str, engine: str, bad: str) -> str:
    """What the SSH adapter printed, handed `bad` for `engine` on `host` (it must refuse)."""
    done: subprocess.CompletedProcess[str] = bed.workstation.run(
        [sys.executable, "-c", REJECTED, str(spec), host, engine, bad], timeout=60
    )
    assert done.returncode == 3, done.stdout + done.stderr
    return done.stdout


def holders(machines: list[Machine], address: str) -> list[str]:
    """Names of the machines that have `address` on an interface (`ip -4 addr`)."""
    return [m.name for m in machines if f" {address}/" in m.sh("ip -4 -o addr show").stdout]


def stays(machines: list[Machine], address: str, want: list[str], seconds: float) -> None:
    """`want` hold `address` for `seconds`, polled; else the hosts' keepalived journals."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = holders(machines, address)
        if held != want:
            time.sleep(3)
            journal = "journalctl -u keepalived -n 25 --no-pager -o short-precise"
            said = {m.name: m.sh(journal).stdout for m in machines}
            raise AssertionError((held, holders(machines, address), said))
        time.sleep(0.25)


# What HAProxy's checks accept on every backend: plain HTTP on 80 answering the node's name
# (the ingress, behind 80 and 443), TLS on 9345 answering `pong` (the supervisor's `/ping`)
# and on 6443 `pong` too, or, given a token file (argv[3]), 200 only to `Authorization:
# Bearer <token>` and 401 to anyone else (an apiserver that does not know the caller).
CHECKED_SERVER = """\
import http.server, socket, ssl, sys, threading
want = "Bearer " + open(sys.argv[3]).read().strip() if len(sys.argv) > 3 else None
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        port = self.server.server_port
        status, body = 200, socket.gethostname().encode() if port == 80 else b"pong"
        if port == 6443 and want is not None and self.headers.get("Authorization") != want:
            status, body = 401, b'{"kind":"Status","code":401}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
def serve(port, tls):
    server = http.server.ThreadingHTTPServer(("", port), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
for port, tls in ((6443, True), (9345, True)):
    threading.Thread(target=serve, args=(port, tls), daemon=True).start()
serve(80, False)
"""
CHECKED_UNIT = "rke2ha-lbtest-checked"


def checked_servers(
    bed: Testbed, directory: Path, token: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """CHECKED_SERVER on each node (bounded to 15 minutes), stopped and removed after."""
    cert, key = write_self_signed(directory / "node.crt", directory / "node.key", "node")
    files = {"server.py": CHECKED_SERVER, "crt": cert.read_text(), "key": key.read_text()}
    if token is not None:
        files["token"] = token
    return python_on_nodes(bed, CHECKED_UNIT, "/run/rke2ha-lbtest-checked", files)
