"""`lb.spread` against real load balancers: every node in rotation is seen, within bounds.

Three situations, each with real processes: the healthy lab (pass, and it stops early), a
node that re-enters rotation only after the check started (pass: the check waits for the
load balancer's `rise`, bounded), and a load balancer whose /status shows every backend in
rotation while every connection lands on node-1 (fail: node-2 and node-3 got nothing).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from topology import NODES, OFFSET, LabProcesses, failing_ids, run_checks

from rke2ha.check import checks, spread
from rke2ha.check.lbstatus import rotation_probe
from rke2ha.check.result import CheckResult
from rke2ha.check.session import with_defaults
from rke2ha.check.target import CheckOptions, CheckTarget, Endpoint, load_target
from rke2ha.specfile import load_spec

# The one-node load balancer of the last test: its own loopback address, clear of the lab.
SKEWED_LB = "127.0.60.20"
SKEWED_ADMIN_PORT = 18406
# Relays on node-2's and node-3's addresses that forward to node-1 (not a node port).
RELAY_PORT = 444 + OFFSET


def lab_target(lab: LabProcesses) -> CheckTarget:
    spec = load_spec(lab.spec_file)
    return load_target(spec, with_defaults(spec, CheckOptions(), OFFSET))


async def node_results(target: CheckTarget) -> dict[str, list[CheckResult]]:
    """The real node checks lb.spread depends on (443 and 80, as the runner gives it)."""
    results: dict[str, list[CheckResult]] = {}
    for node in target.nodes:
        results[node.name] = [
            await checks.node_port(target, node, 443),
            await checks.node_port(target, node, 80),
        ]
    return results


def in_rotation(target: CheckTarget, node: str) -> bool | None:
    probe = rotation_probe(target, 443)
    assert probe is not None

    async def ask() -> bool | None:
        return await probe(node)

    return asyncio.run(ask())


def wait_rotation(target: CheckTarget, node: str, want: bool, within: float) -> None:
    deadline = time.monotonic() + within
    while in_rotation(target, node) is not want:
        assert time.monotonic() < deadline, f"{node} rotation never became {want}"
        time.sleep(0.05)


def test_healthy_lab_every_node_answers_and_sampling_stops_early(
    healthy_lab: LabProcesses,
) -> None:
    target = lab_target(healthy_lab)
    started = time.monotonic()
    sample = asyncio.run(spread.sample(target, set(NODES)))
    elapsed = time.monotonic() - started
    assert set(sample.served) == set(NODES), sample
    assert sample.rotation == dict.fromkeys(NODES, True)
    # Every node seen in the first round or two: far below the caps.
    assert sample.requests <= 2 * spread.CONNECTIONS_PER_NODE * len(NODES), sample
    assert elapsed < spread.MAX_SECONDS, elapsed
    result = asyncio.run(checks.lb_spread(target, node_results(target)))
    assert result.status == "pass", result
    assert "3 nodes" in result.detail


def test_node_back_only_after_the_check_started_is_waited_for(
    healthy_lab: LabProcesses,
) -> None:
    """node-3 restarts; its node checks pass at once, the load balancer's `rise` comes later.

    Before lb.spread used the load balancer's /status, it sent its rounds in the gap and
    failed ("node-3 healthy but got none"); now it waits (bounded) for the rotation.
    """
    target = lab_target(healthy_lab)
    asyncio.run(healthy_lab.kill("node-3"))
    try:
        wait_rotation(target, "node-3", False, within=5)
    finally:
        asyncio.run(healthy_lab.restore("node-3"))
    assert in_rotation(target, "node-3") is False  # the gap this test is about
    results = run_checks(healthy_lab.spec_file)
    assert not failing_ids(results), [r for r in results if r.failed]
    spread_result = next(r for r in results if r.id == "lb.spread")
    assert "node-3" in spread_result.detail and "3 nodes" in spread_result.detail


def test_unhealthy_node_out_of_rotation_is_reported_not_failed(
    healthy_lab: LabProcesses,
) -> None:
    target = lab_target(healthy_lab)
    asyncio.run(healthy_lab.kill("node-2"))
    try:
        wait_rotation(target, "node-2", False, within=5)
        results = {r.id: r for r in run_checks(healthy_lab.spec_file)}
    finally:
        asyncio.run(healthy_lab.restore("node-2"))
    assert results["node.node-2.443"].status == "fail"
    assert results["lb.spread"].status == "pass", results["lb.spread"]
    assert "node-2" in results["lb.spread"].detail
    assert "out of rotation" in results["lb.spread"].detail


# ---- a load balancer that shows three backends in rotation but reaches only node-1 ----


class _Relay:
    """TCP forwarders on node-2's and node-3's addresses, all to node-1's 443 (a backend
    list that points at one machine three times: the real mistake this stands for)."""

    def __init__(self, listen: list[Endpoint], to: Endpoint) -> None:
        self.listen, self.to = listen, to
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        servers = [
            self.loop.run_until_complete(asyncio.start_server(self._pipe, e.host, e.port))
            for e in self.listen
        ]
        self.ready.set()
        self.loop.run_forever()
        for server in servers:
            server.close()
            self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.to.host, self.to.port), 2
            )
        except (OSError, TimeoutError):
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def __enter__(self) -> _Relay:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def skewed_lb(healthy_lab: LabProcesses) -> Iterator[CheckTarget]:
    """The lab's target, pointed at a real `rke2ha lb serve` whose three backends are
    node-1, and relays on node-2's and node-3's addresses that end at node-1 too."""
    target = lab_target(healthy_lab)
    node_1 = Endpoint(NODES["node-1"], 443 + OFFSET)
    relays = [Endpoint(NODES[name], RELAY_PORT) for name in ("node-2", "node-3")]
    frontend = Endpoint(SKEWED_LB, 443 + OFFSET)
    admin = Endpoint(SKEWED_LB, SKEWED_ADMIN_PORT)
    with _Relay(relays, node_1):
        backends = [a for e in (node_1, *relays) for a in ("--backend", str(e))]
        healthy_lab._spawn(
            "lb-skewed", "lb", "serve", "--listen", str(frontend), *backends,
            "--admin", str(admin), "--interval", "200ms", "--access-log", "off",
        )  # fmt: skip
        try:
            _wait_listening(frontend, within=10)
            _wait_listening(admin, within=10)
            yield replace(target, lb_address=SKEWED_LB, lb_admin=admin)
        finally:
            healthy_lab.stop("lb-skewed")


def _wait_listening(endpoint: Endpoint, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=0.2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {endpoint}"
            time.sleep(0.05)


def test_everything_to_one_node_fails_within_the_caps(skewed_lb: CheckTarget) -> None:
    target = skewed_lb
    # The load balancer looks healthy: /status has every backend in rotation.
    for node in NODES:
        wait_rotation(target, node, True, within=5)
    started = time.monotonic()
    sample = asyncio.run(spread.sample(target, set(NODES)))
    elapsed = time.monotonic() - started
    assert set(sample.served) == {"node-1"}, sample
    assert sample.rotation == dict.fromkeys(NODES, True)
    # It tried hard (more than a round) but within the hard caps.
    assert spread.CONNECTIONS_PER_NODE * len(NODES) < sample.requests <= spread.MAX_REQUESTS
    assert elapsed <= spread.MAX_SECONDS + 0.5, elapsed

    result = asyncio.run(checks.lb_spread(target, node_results(target)))
    assert result.status == "fail", result
    assert result.id == "lb.spread" and result.rule == "check.lb.spread"
    assert "node-2" in result.detail and "node-3" in result.detail
    assert "in rotation" in result.detail
    assert "keeps a healthy node out of rotation" in result.fix
