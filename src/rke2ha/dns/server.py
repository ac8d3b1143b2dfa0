"""The built-in authoritative server: thin asyncio adapters around `zone.respond`.

UDP and TCP listen on the same address and port. The adapters only move bytes; every
decision is in `zone.py`. The server never dies of its input: whatever a datagram or a
TCP stream holds, the worst outcome is a FORMERR, a dropped datagram or a closed
connection, and valid queries keep being answered. TCP connections are capped and close
after `TCP_IDLE_TIMEOUT` seconds of silence, so a client that sends half a message cannot
tie the server up.

Answers to UDP queries are cached by the query's bytes after the ID (as NSD precompiles
its answers); the cache is dropped whenever the zone changes (SIGHUP, health). SIGHUP
re-reads the spec file; a spec that no longer loads is reported and the old zone kept.
Whenever the zone's content changes (start, a SIGHUP that changes it, health) the serial
is bumped and the secondaries in `dns.builtin.notify` get a NOTIFY (`notifier.py`); a
SIGHUP that changes nothing keeps the serial, so secondaries do not transfer for nothing.
uvloop runs the loop when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import dns.tsig

from rke2ha.dns.health import HealthWatcher, health_ttl
from rke2ha.dns.notifier import Notifier
from rke2ha.dns.notify import parse_target
from rke2ha.dns.tsigkey import load_tsig
from rke2ha.dns.wire import answer
from rke2ha.dns.zone import Zone, build_zone
from rke2ha.errors import InvalidError, Rke2haError, UsageError
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

log = logging.getLogger("rke2ha.dns")

TCP_IDLE_TIMEOUT = 10.0
TCP_MAX_CONNECTIONS = 256
CACHE_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


class Answerer:
    """The current zone, the answer cache and zone swaps; shared by UDP and TCP."""

    def __init__(self, zone: Zone, cache: bool = True) -> None:
        self.zone = zone
        self.cache = cache
        self._cache: dict[bytes, bytes] = {}

    def swap(self, zone: Zone) -> None:
        self.zone = zone
        self._cache = {}

    def answer(self, wire: bytes, *, tcp: bool, client: str) -> bytes | None:
        if tcp or not self.cache:  # TCP carries AXFR, whose answer depends on the client
            return answer(self.zone, wire, tcp=tcp, client=client)[0]
        key = wire[2:]
        cached = self._cache.get(key)
        if cached is not None:
            return wire[:2] + cached
        reply, cacheable = answer(self.zone, wire, tcp=False, client=client)
        if reply is not None and cacheable and len(wire) >= 2:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = reply[2:]
        return reply


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's: cast, do not isinstance-check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.answerer.answer(data, tcp=False, client=str(addr[0]))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from clients that went away: nothing to do, keep serving.
        log.debug("udp: %s", exc)


class _Tcp(asyncio.Protocol):
    """RFC 7766 framing: a 2-byte length before every message, several per connection."""

    open_connections = 0

    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if _Tcp.open_connections >= TCP_MAX_CONNECTIONS:
            self.transport.abort()
            return
        _Tcp.open_connections += 1
        peer = self.transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
            _Tcp.open_connections -= 1
            self.idle = None

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        assert self.transport is not None
        self.idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        self._arm_idle()
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if length == 0:  # no DNS message is empty: the stream is garbage
                self.transport.close()
                return
            if len(self.buffer) < 2 + length:
                return
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            reply = self.answerer.answer(message, tcp=True, client=self.client)
            if reply is None:
                # Unparseable header: the framing can no longer be trusted.
                self.transport.close()
                return
            self.transport.write(len(reply).to_bytes(2, "big") + reply)


class DnsServer:
    """Binds UDP and TCP, serves the spec's zone, follows health and SIGHUP."""

    def __init__(
        self,
        spec: Spec,
        listen: Listen,
        spec_path: Path | None = None,
        health_port: int | None = None,  # None: 80, or 443 at layer 7 (dns.health)
        reload: Callable[[], Spec] | None = None,
        cache: bool = True,
    ) -> None:
        self.spec = spec
        self.listen = listen
        self.spec_path = spec_path
        self.health_port = health_port
        self._reload = reload or (lambda: load_spec(spec_path))
        self.serial = int(time.time())
        self.key = transfer_key(spec)
        self.answerer = Answerer(self._build(spec, None), cache)
        self.notifier = Notifier(notify_targets(spec), listen.host, self.key)
        self._health_task: asyncio.Task[None] | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._tcp_server: asyncio.Server | None = None
        self.bound_port = listen.port

    def _next_serial(self) -> int:
        self.serial = max(self.serial + 1, int(time.time())) & 0xFFFFFFFF
        return self.serial

    def _build(self, spec: Spec, addresses: list[str] | None) -> Zone:
        ttl = health_ttl(spec) if len(spec.load_balancer.addresses) > 1 else None
        return build_zone(spec, self.serial, addresses, ttl, self.key)

    def _serve_zone(self, zone: Zone) -> None:
        self.answerer.swap(zone)
        self.notifier.zone_changed(zone.soa)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        try:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self.answerer),
                local_addr=(self.listen.host, self.listen.port),
                family=family,
            )
            self.bound_port = int(udp.get_extra_info("sockname")[1])
            self._transports.append(udp)
            self._tcp_server = await loop.create_server(
                lambda: _Tcp(self.answerer),
                self.listen.host,
                self.bound_port,
                family=family,
                reuse_address=True,
            )
        except OSError as err:
            self.close()
            raise UsageError(
                f"cannot listen on {self.listen.host}:{self.listen.port}: {err.strerror or err}; "
                "pick another address or port with --listen (ports below 1024 need root)"
            ) from None
        self._start_health()
        self.notifier.zone_changed(self.answerer.zone.soa)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _start_health(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        if len(self.spec.load_balancer.addresses) > 1:
            watcher = HealthWatcher(self.spec, self._on_health, self.health_port)
            self._health_task = asyncio.get_running_loop().create_task(watcher.run())

    def _on_health(self, serving: list[str]) -> None:
        log.info("load balancer addresses served: %s", ", ".join(serving))
        self._next_serial()
        self._serve_zone(self._build(self.spec, serving))

    def reload(self) -> None:
        """SIGHUP: read the spec again; keep the old zone when the new one is wrong.

        The serial moves (and secondaries are notified) only when the zone's content
        changed; a new key or NOTIFY list applies from now on either way."""
        try:
            spec = self._reload()
            key = transfer_key(spec)
            targets = notify_targets(spec)
        except Rke2haError as err:
            log.error("reload failed, still serving the previous zone: %s", err)
            return
        old_key, self.key = self.key, key
        try:
            zone = self._build(spec, None)
        except Rke2haError as err:
            self.key = old_key
            log.error("reload failed, still serving the previous zone: %s", err)
            return
        self.spec = spec
        new_secondaries = (targets, key) != (self.notifier.targets, self.notifier.key)
        if new_secondaries:  # else a round still retrying for the current serial goes on
            self.notifier.cancel()
            self.notifier = Notifier(targets, self.listen.host, key)
        if zone.to_text() == self.answerer.zone.to_text():
            self.answerer.swap(zone)  # the same records; the key or the ACLs may differ
            if new_secondaries:
                self.notifier.zone_changed(zone.soa)  # new secondaries hear of the zone
            log.info(
                "reloaded %s: zone unchanged (serial %d)", self.spec_path or "spec", self.serial
            )
        else:
            self._next_serial()
            self._serve_zone(self._build(spec, None))
            log.info("reloaded %s (serial %d)", self.spec_path or "spec", self.serial)
        self._start_health()

    def close(self) -> None:
        self.notifier.cancel()
        if self._health_task is not None:
            self._health_task.cancel()
        for transport in self._transports:
            transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()

    async def serve_forever(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set or SIGTERM/SIGINT arrives."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        log.info(
            "serving zone %s on %s:%d (udp, tcp)",
            self.spec.dns.zone,
            self.listen.host,
            self.bound_port,
        )
        try:
            await stop.wait()
        finally:
            self.close()


def transfer_key(spec: Spec) -> dns.tsig.Key | None:
    """The key of `dns.builtin.transfer_key`, read from its 0600 file; None when unset."""
    config = spec.dns.builtin.transfer_key
    if config is None:
        return None
    path = spec.resolve(config.key_file)
    field = "dns.builtin.transfer_key.key_file"
    return load_tsig(path, config.name, config.algorithm, field).key


def notify_targets(spec: Spec) -> list[tuple[str, int]]:
    """(IP, port) of every `dns.builtin.notify` entry; InvalidError naming a bad one."""
    targets = []
    for index, text in enumerate(spec.dns.builtin.notify):
        try:
            targets.append(parse_target(text))
        except ValueError as err:
            raise InvalidError(
                f"dns.builtin.notify[{index}]: {err}; give a secondary's IP or IP:PORT"
            ) from None
    return targets


def run(server: DnsServer) -> None:
    """Run the server on uvloop when installed, else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve_forever())
    else:
        uvloop.run(server.serve_forever())
