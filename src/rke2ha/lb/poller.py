"""Readiness of the layer 4 relay's sockets through one epoll of our own, polled by the loop.

Why: uvloop gives every descriptor passed to `add_reader`/`add_writer` a libuv poll handle.
Making one costs an EPOLL_CTL_ADD+DEL probe, a FIONBIO ioctl and several Python objects,
and dropping it more EPOLL_CTL_DELs: strace counted 12 epoll_ctl calls per proxied
connection. In the new-connection benchmark a connection carries one request, so that
bookkeeping was a large share of its cost (measured: 3.1 µs per descriptor through uvloop,
0.9 µs through an epoll of our own). Here a descriptor costs one epoll_ctl when it is
registered or its interest changes and nothing more; the epoll's own descriptor is given
to the event loop once, and the loop calls `_dispatch` when any socket is ready.

Semantics follow the loop's own readers and writers: level-triggered, one callback per
direction and descriptor, an error or hang-up wakes both. A descriptor must be removed
(`remove_reader`/`remove_writer`) before its socket is closed, as with the loop.
"""

from __future__ import annotations

import asyncio
import errno
import select
import weakref
from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], object]

_IN = getattr(select, "EPOLLIN", 1)
_OUT = getattr(select, "EPOLLOUT", 4)
_WAKES_READER = _IN | getattr(select, "EPOLLERR", 8) | getattr(select, "EPOLLHUP", 16)
_WAKES_WRITER = _OUT | getattr(select, "EPOLLERR", 8) | getattr(select, "EPOLLHUP", 16)
# Events handled per call of `_dispatch`: more stay ready in the epoll, and the loop calls
# again on its next turn, after its other callbacks (timers, the listener, health checks).
MAX_EVENTS = 256


class Readiness(Protocol):
    """What the relay and the frontend need of an event loop (an asyncio loop has it too)."""

    def add_reader(self, fd: int, callback: Callback) -> None: ...

    def remove_reader(self, fd: int) -> object: ...

    def add_writer(self, fd: int, callback: Callback) -> None: ...

    def remove_writer(self, fd: int) -> object: ...


class Poller:
    """`Readiness` for many sockets through one epoll registered with `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: `poller_for` keys pollers by their loop weakly, and a strong reference here
        # would keep every loop (and its epoll) alive for the life of the process.
        self._loop = weakref.ref(loop)
        self._epoll = select.epoll()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._masks: dict[int, int] = {}
        # Descriptors removed while `_dispatch` runs: events of the same batch for them
        # belong to the old socket, even if a new one got the same number meanwhile.
        self._removed: set[int] = set()
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    @property
    def watched(self) -> int:
        return len(self._masks)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> bool:
        if self._readers.pop(fd, None) is None:
            return False
        self._update(fd)
        return True

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> bool:
        if self._writers.pop(fd, None) is None:
            return False
        self._update(fd)
        return True

    def close(self) -> None:
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._readers.clear()
        self._writers.clear()
        self._masks.clear()

    def _update(self, fd: int) -> None:
        mask = (_IN if fd in self._readers else 0) | (_OUT if fd in self._writers else 0)
        old = self._masks.get(fd)
        if mask == old:
            return
        epoll = self._epoll
        if not mask:
            del self._masks[fd]
            self._removed.add(fd)
            try:
                epoll.unregister(fd)
            except OSError as err:  # already closed: the kernel dropped it with the socket
                if err.errno not in (errno.EBADF, errno.ENOENT):
                    raise
            return
        self._masks[fd] = mask
        try:
            if old is None:
                epoll.register(fd, mask)
            else:
                epoll.modify(fd, mask)
        except FileExistsError:  # a closed socket's number came back before its removal
            epoll.modify(fd, mask)
        except FileNotFoundError:  # closed and reopened under us: register afresh
            epoll.register(fd, mask)

    def _dispatch(self) -> None:
        removed = self._removed
        removed.clear()
        events = self._epoll.poll(0, MAX_EVENTS)  # EINTR is retried by Python (PEP 475)
        readers, writers = self._readers, self._writers
        for fd, event in events:
            if fd in removed:
                continue
            if event & _WAKES_READER:
                callback = readers.get(fd)
                if callback is not None:
                    self._run(callback)
            if event & _WAKES_WRITER and fd not in removed:
                callback = writers.get(fd)
                if callback is not None:
                    self._run(callback)
        removed.clear()

    def _run(self, callback: Callback) -> None:
        try:
            callback()
        except Exception as exc:  # one socket's bug must not stop the others' callbacks
            loop = self._loop()
            if loop is not None:
                loop.call_exception_handler(
                    {"message": "a readiness callback failed", "exception": exc}
                )


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poller] = weakref.WeakKeyDictionary()


def poller_for(loop: asyncio.AbstractEventLoop) -> Readiness:
    """The process's one `Poller` for `loop` (made on first use, gone with the loop)."""
    if not hasattr(select, "epoll"):
        return loop  # elsewhere than Linux: the loop's own readers and writers
    poller = _POLLERS.get(loop)
    if poller is None:
        poller = _POLLERS[loop] = Poller(loop)
    return poller
