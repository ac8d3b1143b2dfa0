"""The layer 4 pool and its active checks, seen through the layer 7 `NodeSet` interface.

Health is the layer 4 code's (`rke2ha.lb.pool.Pool` with `health_state` machines, driven by
`rke2ha.lb.checks.Checker` with probes from `rke2ha.healthplan`): a node serves layer 7
traffic exactly when layer 4 would send it connections. A failed connect is reported as the
layer 4 passive check (`Pool.connect_failed`), which takes the node down at once; it comes
back after `rise` passing checks. The pool is read live, so a reload that adds or drains
backends (`Pool.update`) is seen by the next request. Balancing stays here because a layer
7 "connection" to a node is a request: least-outstanding-requests, rotated on ties; the
backend's `active`/`total` counters are kept so the admin page shows layer 7 load too.
"""

from __future__ import annotations

import itertools

from rke2ha.lb.health_state import State
from rke2ha.lb.l7.nodes import Balance, Node
from rke2ha.lb.pool import Backend, Pool


class PoolNodes:
    def __init__(self, pool: Pool, balance: Balance = "leastconn") -> None:
        self.pool = pool
        self.balance = balance
        self._nodes: dict[str, tuple[Node, Backend]] = {}
        self._by_backend: dict[int, tuple[Node, Backend]] = {}
        self._turn = itertools.count()

    def _node(self, backend: Backend) -> Node:
        # Looked up by the Backend object itself (every request asks): its `key` property
        # formats a string on each call. A Backend replaced by a reload gets a new Node.
        known = self._by_backend.get(id(backend))
        if known is not None and known[1] is backend:
            return known[0]
        known = (Node(backend.config.host, backend.config.port, id=backend.key), backend)
        known[0].ref = backend
        self._nodes[backend.key] = known
        self._by_backend[id(backend)] = known
        if len(self._by_backend) > 4 * len(self._nodes) + 16:  # forget replaced backends
            self._by_backend = {id(b): k for k in self._nodes.values() for b in (k[1],)}
        return known[0]

    def candidates(self, exclude: set[str]) -> list[Node]:
        node = self._node
        usable = [node(b) for b in self.pool.backends if b.serves]
        if exclude:
            usable = [n for n in usable if n.id not in exclude]
        if not usable:
            return []
        start = next(self._turn) % len(usable)
        rotated = usable[start:] + usable[:start] if start else usable
        if self.balance == "leastconn":
            rotated.sort(key=_active)
        return rotated

    def pick(self) -> Node | None:
        """`candidates(set())[0]` without building rotated and sorted lists (asked for every
        request): the turn rotates over the serving backends, so ties spread evenly whether
        or not a backend is down. Least outstanding requests compares the Backends' own
        counters (`begin`/`end` keep them equal to the Nodes'); only the winner is looked up.
        """
        usable = [
            b
            for b in self.pool.backends
            if b.machine.state in _SERVING and b.maintenance_since is None
        ]
        count = len(usable)
        if not count:
            return None
        start = next(self._turn) % count
        best = usable[start]
        if self.balance == "leastconn":
            for step in range(1, count):
                other = usable[(start + step) % count]
                if other.active < best.active:
                    best = other
        return self._node(best)

    def failed(self, node: Node, reason: str) -> None:
        backend = self._nodes[node.id][1]
        if backend.serves:
            self.pool.connect_failed(backend, reason)

    # `node.ref` is the node's Backend (set in `_node`): no lookup on the per-request path.
    def begin(self, node: Node) -> None:
        node.active += 1
        backend = node.ref
        backend.active += 1
        backend.total += 1

    def end(self, node: Node, received: int = 0, sent: int = 0) -> None:
        node.active -= 1
        backend = node.ref
        backend.active -= 1
        backend.bytes_in += received  # the layer 4 counters' sense: from the node ...
        backend.bytes_out += sent  # ... and to it


# A tuple, not a set: `in` compares enum members by identity, where a set would call
# Enum.__hash__ (a Python function) for every backend of every request.
_SERVING = tuple(state for state in State if state.serves)


def _active(node: Node) -> int:
    return node.active
