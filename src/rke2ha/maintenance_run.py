"""The I/O of `rke2ha lb drain|enable NODE`: the built-in LB's admin endpoint, HAProxy's
runtime-API socket on this machine, or the same socket on each `load_balancer.hosts`
machine over SSH; nginx by `up`'s own engine step (render, check, replace, reload) from
the state's drained nodes. What to send is decided in `rke2ha.maintenance` (no I/O there).

HAProxy and nginx record the drained nodes in the state file, under the state lock, so a
later `up` keeps them out (`State.drained`): nginx before its config is rendered from it,
HAProxy once its runtime API took the command. Every function returns the lines to
print, one per load balancer, and raises InvalidError (exit 1) when a load balancer
cannot be reached, naming it and why.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rke2ha.errors import InvalidError, Rke2haError
from rke2ha.invocation import spec_command
from rke2ha.maintenance import (
    Action,
    check_engine,
    check_node,
    drain_commands,
    drained_after,
    haproxy_backends,
    haproxy_commands,
    keep_drained_command,
    nginx_upstreams,
    remote_socket_command,
    stats_socket,
    worker_pid_command,
)
from rke2ha.spec import Spec
from rke2ha.state import State, StateLock, StateStore

SOCKET_TIMEOUT = 5.0
KEEP_DRAINED_TIMEOUT = 30.0


def apply(spec: Spec, node: str, action: Action, port_offset: int = 0) -> list[str]:
    """`port_offset`: the one the built-in load balancer was started with (`lb serve
    --port-offset`), which moves its admin endpoint too."""
    lb = spec.load_balancer
    check_engine(lb.engine)
    check_node(node, [n.name for n in spec.nodes])
    if lb.engine == "builtin":
        return [_builtin(spec, node, action, port_offset)]
    lock = StateLock(spec.state_dir, spec.name)
    with lock.acquire(f"lb {action} {node}"):
        store = StateStore(spec.state_dir, spec.name)
        state = store.load()
        if lb.engine == "nginx":
            # First: the config is rendered from the state. A host that then fails keeps
            # the record, so `lb drain` again or `up` finishes the job.
            _record(store, state, node, action)
            return _nginx(spec, node, action, state)
        # A drain is recorded first: when one host takes it and the next fails, `up`'s
        # reload of the first must not bring the node back mid-maintenance. An enable is
        # recorded once every host took it: a partial one leaves the node out where `up`
        # reloads (the safe side), and the error says which host failed.
        if action == "drain":
            _record(store, state, node, action)
        lines = _hosts(spec, node, action) if lb.hosts else [_local_haproxy(spec, node, action)]
        if action == "enable":
            _record(store, state, node, action)
        return lines


def _record(store: StateStore, state: State | None, node: str, action: Action) -> None:
    """The drained nodes in the state (when there is one): what `up` renders from."""
    if state is not None:
        state.drained = drained_after(state.drained, node, action)
        store.save(state)


# ---- nginx: the config again, with the node marked down, and a reload ---------------------


class _Notes:
    """A provider reporter that keeps the progress lines (printed only on a failure)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextmanager
    def step(self, change: object) -> Iterator[None]:
        yield

    def note(self, text: str) -> None:
        self.lines.append(text)


def _nginx(spec: Spec, node: str, action: Action, state: State | None) -> list[str]:
    from rke2ha.providers.base import ProviderOptions
    from rke2ha.providers.existing.configs import host_config_text
    from rke2ha.providers.existing.provider import ExistingProvider

    if state is None:
        path = StateStore(spec.state_dir, spec.name).path
        raise InvalidError(
            f"nginx is not running under rke2ha for this spec (no state file {path}); "
            "`rke2ha up` starts it"
        )
    provider = ExistingProvider(spec, ProviderOptions())
    notes = _Notes()
    try:
        reached = provider.reapply_engine(notes)
    except Rke2haError as err:
        # Which hosts already reloaded with the node marked: the operator needs to know.
        if not notes.lines:
            raise
        done = "\n".join(f"  {line}" for line in notes.lines)
        raise InvalidError(f"{err}\nwhat was done before it failed:\n{done}") from None
    upstreams = ", ".join(nginx_upstreams(host_config_text(spec, state.drained)))
    return [
        f"{node}: {_verb(action)} on {upstreams} (nginx "
        + ("config checked and reloaded" if changed else "already so, no reload")
        + f", {where})"
        for where, changed in reached
    ]


# ---- the built-in load balancer ---------------------------------------------------------


def _builtin(spec: Spec, node: str, action: Action, port_offset: int = 0) -> str:
    listen = spec.load_balancer.admin_listen(port_offset)
    if listen is None:
        raise InvalidError(
            "load_balancer.admin is empty: the built-in load balancer has no admin endpoint "
            "to take a node out through; set load_balancer.admin (e.g. 127.0.0.1:8404)"
        )
    host, port = listen
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"http://{where}/nodes/{node}/{action}"
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace").strip()
        raise InvalidError(
            f"the built-in load balancer at {where} refused {action} of {node}: "
            f"HTTP {err.code} {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise InvalidError(
            f"the built-in load balancer is not running: its admin endpoint {where} "
            f"(load_balancer.admin) does not answer ({reason}); start it "
            f"(`{spec_command(spec, 'up')}` or `{spec_command(spec, 'lb', 'serve')}`), or pass "
            "the --port-offset it was started with"
        ) from None
    frontends = ", ".join(answer.get("frontends", [])) or "no frontend"
    return f"{node}: {_verb(action)} on {frontends} (built-in load balancer, {where})"


def _verb(action: Action) -> str:
    return "drain (no new connections; open ones finish)" if action == "drain" else "enabled"


# ---- HAProxy on this machine -------------------------------------------------------------


def _local_haproxy(spec: Spec, node: str, action: Action) -> str:
    from rke2ha.lbhost.decide import ENGINES
    from rke2ha.providers.existing.engines import EnginePaths

    config_file = EnginePaths.under(spec.state_dir, "haproxy").running_config
    # As a systemd unit here (`providers/existing/unitengine.py`) HAProxy runs the packaged
    # config, which rke2ha wrote (its header says so).
    packaged = Path(ENGINES["haproxy"].config)
    try:
        text = config_file.read_text()
    except OSError:
        try:
            text = packaged.read_text()
        except OSError:
            text = ""
        if "Generated by rke2ha" not in text:
            raise InvalidError(
                f"HAProxy is not running under rke2ha here (no {config_file}, and {packaged} "
                "is not rke2ha's); `rke2ha up` starts it"
            ) from None
        config_file = packaged
    path = stats_socket(text)
    if path is None:
        raise InvalidError(
            f"the running {config_file} has no `stats socket` (rendered by an older rke2ha); "
            "`rke2ha up` renders one in (a reload, once)"
        )
    commands = haproxy_commands(text, node, action)
    for command in commands:
        answer = send(path, command)
        if answer:
            raise InvalidError(f"HAProxy ({path}) answered `{command}` with: {answer}")
    backends = ", ".join(haproxy_backends(text, node)) or "no backend"
    return f"{node}: {_verb(action)} on {backends} (HAProxy runtime API, {path})"


def local_worker_pid(config_text: str) -> str:
    """The pid of the HAProxy worker answering on this machine's socket ("-": none)."""
    path = stats_socket(config_text)
    if path is None:
        return "-"
    done = _sh(worker_pid_command(sys.executable, path))
    return done.stdout.strip() or "-"


def drain_again_local(config_text: str, drained: Sequence[str], worker: str) -> str:
    """Drain `drained` again on the HAProxy worker here that replaced `worker`; what it
    said. InvalidError when it did not take (the reload itself went through)."""
    path = stats_socket(config_text)
    commands = drain_commands(config_text, drained)
    if path is None or not commands:
        return "nothing to drain again"
    done = _sh(keep_drained_command(sys.executable, path, worker, commands))
    said = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise InvalidError(
            f"HAProxy reloaded, but {', '.join(drained)} (drained) could not be drained again "
            f"on its new worker ({path}): {said}; run `rke2ha lb drain NODE` again"
        )
    return said


def _sh(command: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=KEEP_DRAINED_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidError(
            f"HAProxy's stats socket did not answer within {KEEP_DRAINED_TIMEOUT:g}s; check "
            "`systemctl status haproxy` and run `rke2ha lb drain` again"
        ) from None


def send(path: str, command: str) -> str:
    """One runtime-API command on HAProxy's unix socket; its answer, stripped."""
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(SOCKET_TIMEOUT)
            sock.connect(path)
            sock.sendall(command.encode() + b"\n")
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as err:
        raise InvalidError(
            f"HAProxy is not running or not reachable on its runtime-API socket {path}: "
            f"{err.strerror or err}; `rke2ha up` starts it"
        ) from None
    return b"".join(chunks).decode(errors="replace").strip()


# ---- HAProxy on the load balancer hosts ---------------------------------------------------


def _hosts(spec: Spec, node: str, action: Action) -> list[str]:
    from rke2ha.providers.existing.configs import host_config_text
    from rke2ha.render.common import DEFAULT_LAYOUT
    from rke2ha.ssh.connection import connect
    from rke2ha.ssh.target import host_targets

    text = host_config_text(spec)
    path = stats_socket(text) or DEFAULT_LAYOUT.haproxy_socket
    command = remote_socket_command(path, haproxy_commands(text, node, action))
    backends = ", ".join(haproxy_backends(text, node)) or "no backend"

    async def go() -> list[str]:
        lines = []
        # One host at a time: a failure names the host, and the hosts before it are done.
        for target in host_targets(spec):
            conn = await connect(target)
            try:
                result = await conn.run(command)
            finally:
                await conn.close()
            if not result.ok:
                said = (result.stdout + result.stderr).strip() or "no answer"
                raise InvalidError(
                    f"load balancer host {target.node}: HAProxy's runtime API ({path}) did not "
                    f"take {action} of {node} (is haproxy running? `rke2ha up`):\n{said}"
                )
            lines.append(
                f"{node}: {_verb(action)} on {backends} (HAProxy runtime API on {target.node})"
            )
        return lines

    return asyncio.run(go())
