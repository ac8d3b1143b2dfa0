"""The I/O of `rke2ha lb drain|enable NODE`: the built-in LB's admin endpoint, HAProxy's
runtime-API socket on this machine, or the same socket on each `load_balancer.hosts`
machine over SSH. What to send is decided in `rke2ha.maintenance` (no I/O there).

Every function returns the lines to print, one per load balancer, and raises InvalidError
(exit 1) when a load balancer cannot be reached, naming it and why.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

from rke2ha.errors import InvalidError
from rke2ha.maintenance import (
    Action,
    check_engine,
    check_node,
    haproxy_backends,
    haproxy_commands,
    remote_socket_command,
    stats_socket,
)
from rke2ha.spec import Spec

SOCKET_TIMEOUT = 5.0


def apply(spec: Spec, node: str, action: Action) -> list[str]:
    lb = spec.load_balancer
    check_engine(lb.engine)
    check_node(node, [n.name for n in spec.nodes])
    if lb.engine == "builtin":
        return [_builtin(spec, node, action)]
    if lb.hosts:
        return _hosts(spec, node, action)
    return [_local_haproxy(spec, node, action)]


# ---- the built-in load balancer ---------------------------------------------------------


def _builtin(spec: Spec, node: str, action: Action) -> str:
    listen = spec.load_balancer.admin_listen()
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
            f"(load_balancer.admin) does not answer ({reason}); start it (`rke2ha up` or "
            "`rke2ha lb serve -f FILE`)"
        ) from None
    frontends = ", ".join(answer.get("frontends", [])) or "no frontend"
    return f"{node}: {_verb(action)} on {frontends} (built-in load balancer, {where})"


def _verb(action: Action) -> str:
    return "drain (no new connections; open ones finish)" if action == "drain" else "enabled"


# ---- HAProxy on this machine -------------------------------------------------------------


def _local_haproxy(spec: Spec, node: str, action: Action) -> str:
    from rke2ha.providers.existing.engines import EnginePaths

    config_file = EnginePaths.under(spec.state_dir, "haproxy").running_config
    try:
        text = config_file.read_text()
    except OSError:
        raise InvalidError(
            f"HAProxy is not running under rke2ha here (no {config_file}); `rke2ha up` starts it"
        ) from None
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
