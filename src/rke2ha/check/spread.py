"""Sampling for `lb.spread`: which node answers requests sent through the load balancer.

A layer-4 balancer balances connections, not requests, so every request here goes over a
fresh connection of its own (fresh source ports also spread over `--workers` processes).
A round opens several at once and holds each one open until the round ends: a
least-connections balancer then sees them all at once and spreads them, where a
connection closed early would make the same backend the least loaded again.

Rounds repeat a short pause apart until every expected node has answered, bounded by hard
caps: MAX_REQUESTS requests and MAX_SECONDS of wall time. A round ends as soon as the
nodes it still waits for have answered, so a request stuck on a frozen node never holds
up a run whose answer is already known.

With the load balancer's admin /status (`lbstatus.rotation_states`) a node that the node
checks found healthy but that is out of rotation right now (it came back a moment ago and
the balancer waits for `rise` good health checks) is waited for, not sampled: /status is
read again after each pause and sampling resumes once it is in. One still out at the caps
is for the verdict to judge (`verdicts_client.spread`: a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from rke2ha.check import lbstatus, probes
from rke2ha.check.lbstatus import RotationStates
from rke2ha.check.observations import SpreadSample
from rke2ha.check.probes import HttpConnection, ProbeError
from rke2ha.check.target import CheckTarget, Endpoint
from rke2ha.lab.node_app import NODE_HEADER as LAB_NODE_HEADER

# The lab's node emulator names the node that served a response in this header.
NODE_HEADER = LAB_NODE_HEADER.lower()
SPREAD_PATH = "/ping"
CONNECTIONS_PER_NODE = 2  # per round: enough for leastconn to hand every node one
MAX_REQUESTS = 60
MAX_SECONDS = 3.0
# Between rounds: long enough that 60 requests cover most of MAX_SECONDS (a node rising in
# a balancer without /status gets its chance), short next to a lab's health interval.
ROUND_PAUSE = 0.2
# Closing a connection to a frozen peer waits for nothing useful: the socket is closed on
# our side at once, the TLS goodbye is best effort.
CLOSE_WAIT = 0.2
# A round with less time than this for its requests is not worth starting.
MIN_REQUEST_TIME = 0.1


class _Round:
    """One round's concurrent requests; over once all got an outcome or `goal` answered."""

    def __init__(self, count: int, goal: set[str]) -> None:
        self.count = count
        self.goal = goal
        self.served: Counter[str] = Counter()  # node name ("" unnamed) -> answers
        self.failures = 0
        self.over = asyncio.Event()

    def finish(self, node: str | None) -> None:
        if node is None:
            self.failures += 1
        else:
            self.served[node] += 1
        everyone = self.failures + self.served.total() >= self.count
        if everyone or (self.goal and self.goal <= set(self.served)):
            self.over.set()


async def _close(connection: HttpConnection) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connection.close(), CLOSE_WAIT)


async def _one(endpoint: Endpoint, target: CheckTarget, batch: _Round, timeout: float) -> None:
    try:
        connection = await HttpConnection.open(
            endpoint, tls=probes.insecure_context(), sni=target.hostname, timeout=timeout
        )
    except ProbeError:
        batch.finish(None)
        return
    try:
        answer = await connection.request(
            SPREAD_PATH, host=target.hostname, keep_alive=True, timeout=timeout
        )
        batch.finish(answer.headers.get(NODE_HEADER, "") if answer.status == 200 else None)
        # Held open until the round is over, so a least-connections balancer sees them all.
        await batch.over.wait()
    except ProbeError:
        batch.finish(None)
    finally:
        await _close(connection)


async def _round(
    endpoint: Endpoint, target: CheckTarget, count: int, goal: set[str], deadline: float
) -> _Round:
    batch = _Round(count, goal)
    # Neither the probe timeout nor the sampling deadline is outlived, closing included.
    timeout = max(MIN_REQUEST_TIME, min(target.timeout, _request_time_left(deadline)))
    tasks = [asyncio.ensure_future(_one(endpoint, target, batch, timeout)) for _ in range(count)]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.over.wait(), timeout + CLOSE_WAIT)
    finally:
        # Requests still in flight (a frozen node, or the goal was met) are not needed.
        batch.over.set()
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return batch


def _request_time_left(deadline: float) -> float:
    """What a round started now may spend on its requests: the rest goes to closing them."""
    return deadline - asyncio.get_running_loop().time() - 2 * CLOSE_WAIT


async def _read_rotation(
    states: RotationStates | None, deadline: float
) -> dict[str, bool | None] | None:
    left = deadline - asyncio.get_running_loop().time()
    if states is None or left <= 0:
        return None
    try:
        return await asyncio.wait_for(states(), left)
    except TimeoutError:
        return None


def _out_of_rotation(nodes: set[str], rotation: dict[str, bool | None] | None) -> set[str]:
    """Nodes /status says are out of rotation (unlisted or unread: not known to be out)."""
    if rotation is None:
        return set()
    return {node for node in nodes if rotation.get(node) is False}


async def sample(
    target: CheckTarget, expected: set[str], states: RotationStates | None = None
) -> SpreadSample:
    """Requests through the load balancer's 443 until every `expected` node answered one.

    `states` defaults to the admin /status of the target's load balancer, if it has one.
    Always at least one round, so the verdict has answers to judge even with no node
    expected; no more when no answer so far named its node (nothing behind the balancer,
    or nodes that do not send NODE_HEADER: outside the lab they cannot be told apart).
    """
    endpoint = target.lb(443)
    if endpoint is None:
        raise ValueError("lb.spread needs the load balancer address")
    if states is None:
        states = lbstatus.rotation_states(target, 443)
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + MAX_SECONDS
    per_round = CONNECTIONS_PER_NODE * max(1, len(target.nodes))
    served: Counter[str] = Counter()
    seen = SpreadSample()
    rotation = await _read_rotation(states, deadline)
    if rotation is None:
        states = None  # unreadable once: do not spend the budget asking again
    while True:
        missing = expected - set(served)
        in_rotation = missing - _out_of_rotation(missing, rotation)
        if seen.rounds == 0 or in_rotation:
            count = min(per_round, MAX_REQUESTS - seen.requests)
            batch = await _round(endpoint, target, count, in_rotation, deadline)
            served.update(batch.served)
            seen.requests += count
            seen.failures += batch.failures
            seen.rounds += 1
            if not set(served) - {""}:
                break  # no answer, or none names its node: more rounds cannot tell more
        missing = expected - set(served)
        out_of_time = _request_time_left(deadline) - ROUND_PAUSE < MIN_REQUEST_TIME
        if not missing or out_of_time or seen.requests >= MAX_REQUESTS:
            break
        await asyncio.sleep(ROUND_PAUSE)
        rotation = await _read_rotation(states, deadline) if states is not None else None
    if states is not None and expected - set(served):
        # The verdict says why a node is missing: read where it stands now.
        rotation = await _read_rotation(states, deadline) or rotation
    seen.served = dict(served)
    seen.rotation = rotation
    seen.seconds = round(loop.time() - start, 3)
    return seen
