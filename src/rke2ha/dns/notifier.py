"""Sends the built-in primary's NOTIFY messages over UDP: a thin asyncio adapter.

`Notifier.zone_changed(soa)` starts one task per secondary in `dns.builtin.notify`; each
sends the message of `notify.py`, waits for the acknowledgement with the timeouts of
`notify.RETRY_TIMEOUTS` and gives up after the last. A newer change cancels the tasks of
the older one (the secondary only needs to hear of the latest serial). The tasks run on
the server's loop beside the query handlers and never block them; every wait is bounded.

The datagrams leave from the server's own listen address (port chosen by the kernel):
a secondary accepts NOTIFY from its primaries' addresses (BIND 9 ARM, `allow-notify`:
by default only the primaries may notify), and the primary is known by that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket

import dns.message
import dns.rrset
import dns.tsig

from rke2ha.dns.notify import RETRY_TIMEOUTS, is_ack, notify_message

log = logging.getLogger("rke2ha.dns")


class _Waiter(asyncio.DatagramProtocol):
    """Hands every datagram to `on_datagram`; the sender decides whether it is the ack."""

    def __init__(self) -> None:
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.datagrams.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the secondary (re)starts: keep to the schedule.
        log.debug("notify: %s", exc)


class Notifier:
    def __init__(
        self,
        targets: list[tuple[str, int]],
        source: str | None,
        key: dns.tsig.Key | None,
        timeouts: tuple[float, ...] = RETRY_TIMEOUTS,
    ) -> None:
        self.targets = targets
        self.source = _usable_source(source)
        self.key = key
        self.timeouts = timeouts
        self._tasks: list[asyncio.Task[bool]] = []

    def zone_changed(self, soa: dns.rrset.RRset) -> None:
        """Tell every secondary about the zone whose SOA is now `soa`."""
        self.cancel()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._notify(soa, host, port)) for host, port in self.targets
        ]

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def wait(self) -> list[bool]:
        """Wait for the current round (tests); True for each acknowledged secondary."""
        return list(await asyncio.gather(*self._tasks))

    async def _notify(self, soa: dns.rrset.RRset, host: str, port: int) -> bool:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        local = (self.source, 0) if self.source and (":" in self.source) == (":" in host) else None
        serial = soa[0].serial
        try:
            transport, waiter = await loop.create_datagram_endpoint(
                _Waiter, local_addr=local, remote_addr=(host, port), family=family
            )
        except OSError as err:
            log.warning("notify %s:%d serial %d: cannot send: %s", host, port, serial, err)
            return False
        # One message, resent as it is: an ack to an earlier copy carries the same ID and
        # is signed over the same MAC, and the whole schedule fits in the TSIG fudge (300 s).
        request = notify_message(soa, self.key)
        wire = request.to_wire()
        try:
            for attempt, timeout in enumerate(self.timeouts, start=1):
                transport.sendto(wire)
                if await _acknowledged(waiter, request, self.key, timeout):
                    log.info(
                        "notify %s:%d serial %d: acknowledged (attempt %d)",
                        host,
                        port,
                        serial,
                        attempt,
                    )
                    return True
            log.warning(
                "notify %s:%d serial %d: no acknowledgement after %d attempts; the secondary "
                "will see the change at its next SOA refresh",
                host,
                port,
                serial,
                len(self.timeouts),
            )
            return False
        finally:
            transport.close()


async def _acknowledged(
    waiter: _Waiter, request: dns.message.Message, key: dns.tsig.Key | None, timeout: float
) -> bool:
    """Wait up to `timeout` s for an ack of `request`; other datagrams are ignored."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (left := end - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(waiter.datagrams.get(), left)
        except TimeoutError:
            return False
        if is_ack(request, data, key):
            return True
    return False


def _usable_source(source: str | None) -> str | None:
    """The listen host as NOTIFY source, unless it is the wildcard (then the kernel picks)."""
    if source is None:
        return None
    try:
        return None if ipaddress.ip_address(source).is_unspecified else source
    except ValueError:
        return None
