"""Read the built-in load balancer's admin `/status`: is a node in rotation on a frontend?

`node_serves` is sans-I/O over the snapshot (`{"frontends": [{"address", "backends":
[{"name", "address", "serves", "state"}]}]}`, see `rke2ha.lb.admin`); `rotation_probe`
(one node, for the drill) and `rotation_states` (every node from one fetch, for
`lb.spread`) fetch it. A snapshot whose frontend is not the one checked (another load
balancer on the same admin port) answers None, like no admin endpoint at all: the caller
then falls back to watching which node answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from rke2ha.check import probes
from rke2ha.check.probes import ProbeError
from rke2ha.check.target import CheckTarget, Endpoint

RotationProbe = Callable[[str], Awaitable[bool | None]]
# node name -> in rotation (None: /status does not list it); None: /status unreadable.
RotationStates = Callable[[], Awaitable[dict[str, bool | None] | None]]


def _address_text(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return str(Endpoint(str(value[0]), int(value[1])))
    return str(value)


def node_serves(
    snapshot: Any, frontend: Endpoint, node_name: str, node_address: str | None
) -> bool | None:
    """True/False: the node's backend on `frontend` serves / does not; None: not found."""
    if not isinstance(snapshot, dict):
        return None
    for fe in snapshot.get("frontends", []):
        if not isinstance(fe, dict) or _address_text(fe.get("address")) != str(frontend):
            continue
        for be in fe.get("backends", []):
            if not isinstance(be, dict):
                continue
            host = _address_text(be.get("address")).rpartition(":")[0].strip("[]")
            if be.get("name") == node_name or (node_address is not None and host == node_address):
                if "serves" in be:
                    return bool(be["serves"])
                return be.get("state") == "up"
    return None


async def _snapshot(target: CheckTarget, admin: Endpoint) -> Any:
    """The admin /status as parsed JSON, or None when it cannot be read."""
    try:
        answer = await probes.http_get(
            admin, "/status", host=admin.host, timeout=min(target.timeout, 1.0)
        )
    except ProbeError:
        return None
    if answer.status != 200:
        return None
    try:
        return json.loads(answer.body)
    except ValueError:
        return None


def rotation_probe(target: CheckTarget, frontend_port: int) -> RotationProbe | None:
    """A probe of the admin /status for `frontend_port`, or None without an admin address."""
    admin, frontend = target.lb_admin, target.lb(frontend_port)
    if admin is None or frontend is None:
        return None
    addresses = {node.name: node.address for node in target.nodes}

    async def serves(node: str) -> bool | None:
        snapshot = await _snapshot(target, admin)
        return node_serves(snapshot, frontend, node, addresses.get(node))

    return serves


def rotation_states(target: CheckTarget, frontend_port: int) -> RotationStates | None:
    """Every spec node's rotation on `frontend_port` from one /status fetch (None: unread).

    None instead of a probe without an admin address, like `rotation_probe`.
    """
    admin, frontend = target.lb_admin, target.lb(frontend_port)
    if admin is None or frontend is None:
        return None

    async def states() -> dict[str, bool | None] | None:
        snapshot = await _snapshot(target, admin)
        if snapshot is None:
            return None
        return {
            node.name: node_serves(snapshot, frontend, node.name, node.address)
            for node in target.nodes
        }

    return states
