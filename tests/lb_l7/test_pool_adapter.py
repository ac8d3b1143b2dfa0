"""Node choice over the layer 4 pool (`PoolNodes.pick`), as plain objects."""

from __future__ import annotations

from collections import Counter

import pytest

from rke2ha.lb.config import BackendConfig
from rke2ha.lb.health_state import State
from rke2ha.lb.l7.nodes import Balance
from rke2ha.lb.l7.pool_adapter import PoolNodes
from rke2ha.lb.pool import Pool


def _nodes(balance: Balance, down: int | None = None) -> PoolNodes:
    pool = Pool([BackendConfig(f"127.0.0.{i}", 80) for i in (1, 2, 3)], rise=2, fall=2)
    if down is not None:
        pool.backends[down].machine.state = State.DOWN
    return PoolNodes(pool, balance)


@pytest.mark.parametrize("balance", ["roundrobin", "leastconn"])
@pytest.mark.parametrize("down", [None, 0, 1, 2])
def test_sequential_requests_spread_evenly_over_serving_nodes(
    balance: Balance, down: int | None
) -> None:
    nodes = _nodes(balance, down)
    served: Counter[str] = Counter()
    for _ in range(90):
        node = nodes.pick()
        assert node is not None
        nodes.begin(node)
        served[node.id] += 1
        nodes.end(node)
    serving = 3 if down is None else 2
    assert len(served) == serving and set(served.values()) == {90 // serving}
    if down is not None:
        assert f"127.0.0.{down + 1}:80" not in served


def test_leastconn_prefers_the_node_with_fewer_requests_in_flight() -> None:
    nodes = _nodes("leastconn")
    busy = nodes.pick()
    assert busy is not None
    nodes.begin(busy)
    nodes.begin(busy)
    for _ in range(6):
        node = nodes.pick()
        assert node is not None and node.id != busy.id


def test_no_serving_node_gives_none() -> None:
    nodes = _nodes("leastconn")
    for backend in nodes.pool.backends:
        backend.machine.state = State.DOWN
    assert nodes.pick() is None
