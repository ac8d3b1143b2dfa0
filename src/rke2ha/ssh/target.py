"""Where and as whom rke2ha logs in to each node: the top `ssh:` block with the node's
`ssh:` overrides, paths made absolute (against the spec's folder, `~` expanded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rke2ha.errors import InvalidError

if TYPE_CHECKING:
    from rke2ha.spec import NodeSsh, Spec

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


@dataclass(frozen=True)
class Endpoint:
    """One sshd: a node, or the bastion in front of it."""

    host: str
    port: int
    user: str


@dataclass(frozen=True)
class Target:
    """Everything needed to reach one node and run commands there."""

    node: str  # the spec's node name
    endpoint: Endpoint
    identity_file: Path | None  # None: the SSH agent's keys
    known_hosts: Path
    jump: Endpoint | None
    connect_timeout: float
    command_timeout: float

    @property
    def privileged(self) -> bool:
        """root runs commands as is; anyone else through `sudo -n`."""
        return self.endpoint.user == "root"


def parse_jump(text: str, default_user: str, path: str) -> Endpoint:
    """`[user@]host[:port]` (IPv6 in brackets: `[::1]:2222`)."""
    user, _, hostport = text.rpartition("@")
    host, port = hostport, 22
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text, path)
    elif hostport.count(":") == 1:
        host, _, number = hostport.partition(":")
        port = _port(number, text, path)
    if not host:
        raise InvalidError(f"{path}: {text!r} names no host; write [user@]host[:port]")
    return Endpoint(host, port, user or default_user)


def _port(text: str, whole: str, path: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidError(f"{path}: {whole!r} has no valid port; write [user@]host[:port]")
    return int(text)


def _path(spec: Spec, path: Path) -> Path:
    return spec.resolve(path.expanduser())


def targets(spec: Spec) -> list[Target]:
    """One target per node, in spec order. The spec must have `ssh:`."""
    return [
        _target(spec, node.name, node.address, node.ssh, f"nodes[{index}]")
        for index, node in enumerate(spec.nodes)
    ]


def host_targets(spec: Spec) -> list[Target]:
    """One target per load balancer host (`load_balancer.hosts`), in spec order."""
    return [
        _target(spec, host.name, host.address, host.ssh, f"load_balancer.hosts[{index}]")
        for index, host in enumerate(spec.load_balancer.hosts)
    ]


def _target(spec: Spec, name: str, address: str | None, over: NodeSsh | None, where: str) -> Target:
    """The top `ssh:` block with the machine's own `ssh:` overrides (`where` is its path)."""
    ssh = spec.ssh
    if ssh is None:
        raise InvalidError(
            "the spec has no ssh: block, so rke2ha cannot reach the machines; add one"
        )
    host = (over.host if over else None) or address
    if not host:
        raise InvalidError(
            f"{where} ({name}): no address to reach it over SSH; "
            f"set {where}.address or {where}.ssh.host"
        )
    user = (over.user if over else None) or ssh.user
    identity = (over.identity_file if over else None) or ssh.identity_file
    jump_text = (over.jump_host if over else None) or ssh.jump_host
    jump_path = f"{where}.ssh.jump_host" if over and over.jump_host else "ssh.jump_host"
    return Target(
        node=name,
        endpoint=Endpoint(host, (over.port if over else None) or ssh.port, user),
        identity_file=_path(spec, identity) if identity else None,
        known_hosts=_path(spec, ssh.known_hosts or DEFAULT_KNOWN_HOSTS),
        jump=parse_jump(jump_text, user, jump_path) if jump_text else None,
        connect_timeout=ssh.connect_timeout,
        command_timeout=ssh.command_timeout,
    )
