"""Which node gets the next request: what the proxy needs to know about the nodes.

The proxy asks a `NodeSet` for the nodes that may take a request now (best first) and
reports connect failures to it (the passive health check). The implementation over the
layer 4 pool and its active checks is `pool_adapter.PoolNodes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Balance = Literal["leastconn", "roundrobin"]


@dataclass(eq=False, slots=True)
class Node:
    host: str
    port: int
    active: int = 0  # requests (and websockets) in flight: least-outstanding balancing
    id: str = field(default="")
    # What the node set knows it by (the layer 4 pool's Backend). Any, not object: read on
    # every request, where a typing.cast would be one more Python call.
    ref: Any = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"{self.host}:{self.port}"


class NodeSet(Protocol):
    def candidates(self, exclude: set[str]) -> list[Node]:
        """Nodes that may take a request now, best first, without the ids in `exclude`."""
        ...

    def pick(self) -> Node | None:
        """The best node now (`candidates(set())[0]`, cheaper: asked for every request)."""
        ...

    def failed(self, node: Node, reason: str) -> None:
        """A connect to `node` failed: take it out of rotation now."""
        ...

    def begin(self, node: Node) -> None:
        """A request (or websocket) starts on `node`: a connection to it is in hand."""
        ...

    def end(self, node: Node, received: int = 0, sent: int = 0) -> None:
        """That request (or websocket) ended, having read `received` bytes from the node
        and written `sent` to it (everything on the wire: heads, bodies, tunnel bytes)."""
        ...
