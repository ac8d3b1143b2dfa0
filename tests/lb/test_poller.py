"""The relay's own epoll (`lb/poller.py`) over real sockets, on uvloop and asyncio."""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from rke2ha.lb.poller import Poller, poller_for

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux only")

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def _run(loop_name: str, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(scenario())


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def _turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_reader_is_level_triggered_and_stops_when_removed(loop_name: str) -> None:
    async def scenario() -> None:
        poller = Poller(asyncio.get_running_loop())
        mine, peer = _pair()
        calls: list[int] = []
        poller.add_reader(mine.fileno(), lambda: calls.append(1))
        await _turns()
        assert calls == []  # nothing to read: no call
        peer.send(b"x")
        await _turns()
        assert len(calls) >= 2  # not read, still readable: called again (level-triggered)
        mine.recv(1)
        seen = len(calls)
        await _turns()
        assert len(calls) <= seen + 1  # drained: at most the call already in flight
        peer.send(b"y")
        assert poller.remove_reader(mine.fileno()) and not poller.remove_reader(mine.fileno())
        stopped = len(calls)
        await _turns()
        assert len(calls) == stopped and poller.watched == 0
        poller.close()
        mine.close()
        peer.close()

    _run(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_reader_and_writer_on_one_descriptor_are_independent(loop_name: str) -> None:
    async def scenario() -> None:
        poller = Poller(asyncio.get_running_loop())
        mine, peer = _pair()
        reads: list[int] = []
        writes: list[int] = []
        fd = mine.fileno()
        poller.add_reader(fd, lambda: reads.append(1))
        poller.add_writer(fd, lambda: writes.append(1))
        await _turns()
        assert writes and not reads  # an empty socket is writable, not readable
        poller.remove_writer(fd)
        peer.send(b"x")
        written = len(writes)
        await _turns()
        assert reads and len(writes) == written  # the reader stayed, the writer went
        poller.close()
        mine.close()
        peer.close()

    _run(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_hang_up_wakes_the_reader(loop_name: str) -> None:
    async def scenario() -> None:
        poller = Poller(asyncio.get_running_loop())
        mine, peer = _pair()
        got: list[bytes] = []

        def on_readable() -> None:
            got.append(mine.recv(10))
            poller.remove_reader(mine.fileno())

        poller.add_reader(mine.fileno(), on_readable)
        peer.close()
        await _turns()
        assert got == [b""]
        poller.close()
        mine.close()

    _run(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_number_reused_within_a_batch_gets_no_stale_event(loop_name: str) -> None:
    """A callback closes another ready socket and a new socket takes its number in the same
    batch: the batch's event was the old socket's and must not reach the new one."""

    async def scenario() -> None:
        poller = Poller(asyncio.get_running_loop())
        first, first_peer = _pair()
        second, second_peer = _pair()
        first_peer.send(b"x")
        second_peer.send(b"x")  # both ready in one poll
        reused: list[str] = []
        fresh: list[socket.socket] = []
        victims = {first.fileno(): second, second.fileno(): first}

        def on_ready(me: socket.socket) -> None:
            if fresh:
                return  # the other one ran first and swapped this one already
            victim = victims[me.fileno()]
            number = victim.fileno()
            newcomer, newcomer_peer = _pair()  # never written to: never readable
            poller.remove_reader(number)
            victim.close()
            os.dup2(newcomer.fileno(), number)  # the closed socket's number, now a new socket
            newcomer.close()
            fresh.extend([socket.socket(fileno=number), newcomer_peer])
            poller.add_reader(number, lambda: reused.append("stale event delivered"))
            me.recv(10)

        poller.add_reader(first.fileno(), lambda: on_ready(first))
        poller.add_reader(second.fileno(), lambda: on_ready(second))
        await _turns()
        assert fresh and reused == []
        poller.close()
        for sock in (first, second, first_peer, second_peer, *fresh):
            sock.close()

    _run(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_failing_callback_is_reported_and_the_others_still_run(loop_name: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reported: list[Any] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
        poller = Poller(loop)
        bad, bad_peer = _pair()
        good, good_peer = _pair()
        ran: list[int] = []

        def explode() -> None:
            bad.recv(10)
            raise RuntimeError("boom")

        def fine() -> None:
            good.recv(10)
            ran.append(1)

        poller.add_reader(bad.fileno(), explode)
        poller.add_reader(good.fileno(), fine)
        bad_peer.send(b"x")
        good_peer.send(b"x")
        await _turns()
        assert ran == [1] and [str(e) for e in reported] == ["boom"]
        poller.close()
        for sock in (bad, bad_peer, good, good_peer):
            sock.close()

    _run(loop_name, scenario)


def test_one_poller_per_loop() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        assert poller_for(loop) is poller_for(loop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
        first = poller_for(runner.get_loop())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
        assert poller_for(runner.get_loop()) is not first


def test_a_poller_goes_with_its_loop() -> None:
    """`poller_for` must not keep loops (and their epoll descriptors) alive."""

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for _ in range(20):
        loop = uvloop.new_event_loop()
        poller_for(loop)
        loop.close()
        del loop
    gc.collect()
    assert open_fds() <= before + 2
