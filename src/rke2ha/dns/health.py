"""Which load balancer addresses to serve when there are several (an LB pair without a VIP).

Probe (decided here, once): an HTTP `GET <ingress health path>` *through* the load
balancer's port 80, with the Host the shared health plan gives (`healthplan.ingress_probe`:
none of Rancher's, so the request reaches the ingress's catch-all server; aiohttp then
sends the load balancer's address) and passing on the statuses the plan accepts. It
proves what a client needs from that address: the load balancer is up *and* forwards to a
node whose ingress answers. A bare TCP connect to 443 would only prove that a process
listens. At layer 7 the load balancer's port 80 redirects every request to https, so there
the probe goes through its port 443 over TLS instead (not verified: the question is "does
this address forward to a healthy node", not "is its certificate right", which `check`
asks).

Each address rises after `rise` passing probes and falls after `fall` failing ones
(`load_balancer.health`), like the load balancer's own checks. When every address is
down the server answers with all of them (fail open, as Route 53 does): an answer that
might work beats NODATA, which certainly does not. With one address there is nothing to
choose, so nothing is probed. Answers carry a short TTL so clients follow changes.

`HealthState` is the sans-I/O part (counters in, addresses out); `probe_http` and
`HealthWatcher` are the thin asyncio part.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from rke2ha.healthplan import ingress_probe
from rke2ha.spec import Spec

HEALTH_TTL_MAX = 10  # seconds: the short TTL of answers chosen by health
LB_HTTP_PORT = 80
LB_HTTPS_PORT = 443


def probe_port(spec: Spec) -> int:
    """The load balancer port the probe goes through by default: 443 at layer 7 (80 only
    redirects there), else 80."""
    return LB_HTTPS_PORT if spec.load_balancer.layer == 7 else LB_HTTP_PORT


@dataclass
class _Counter:
    up: bool = True  # assume up at start: serving all beats serving none
    streak: int = 0  # consecutive results that disagree with `up`


@dataclass
class HealthState:
    """Rise/fall counting per address; `serving` is what the DNS answer should hold."""

    addresses: list[str]
    rise: int = 2
    fall: int = 2
    _counters: dict[str, _Counter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._counters = {address: _Counter() for address in self.addresses}

    def record(self, address: str, ok: bool) -> bool:
        """Count one probe result; True when the address changed between up and down."""
        counter = self._counters[address]
        if ok == counter.up:
            counter.streak = 0
            return False
        counter.streak += 1
        if counter.streak >= (self.rise if ok else self.fall):
            counter.up, counter.streak = ok, 0
            return True
        return False

    def up(self) -> list[str]:
        return [a for a in self.addresses if self._counters[a].up]

    def serving(self) -> list[str]:
        """The addresses to answer with: the healthy ones, or all when none is healthy."""
        return self.up() or list(self.addresses)


def health_ttl(spec: Spec) -> int:
    return min(spec.dns.ttl, HEALTH_TTL_MAX)


def url_host(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


async def probe_http(
    session: aiohttp.ClientSession,
    address: str,
    port: int,
    path: str,
    host_header: str | None,
    ok_statuses: tuple[int, ...],
    timeout: float,
    tls: bool = False,
) -> bool:
    """One GET through the load balancer; True when it answers with an accepted status."""
    url = f"{'https' if tls else 'http'}://{url_host(address)}:{port}{path}"
    try:
        async with session.get(
            url,
            ssl=False,  # not verified (see the module docstring); unused for http
            # No Host of our own: aiohttp sends the address, which no Ingress names.
            headers={"Host": host_header} if host_header else None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            return response.status in ok_statuses
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


class HealthWatcher:
    """Probes every address each interval and calls `on_change(serving)` when it changes."""

    def __init__(
        self,
        spec: Spec,
        on_change: Callable[[list[str]], None],
        port: int | None = None,
    ) -> None:
        health = spec.load_balancer.health
        self.state = HealthState(list(spec.load_balancer.addresses), health.rise, health.fall)
        self.interval, self.timeout = health.interval, health.timeout
        self.port = probe_port(spec) if port is None else port
        self.tls = spec.load_balancer.layer == 7
        self.probe = ingress_probe(spec)
        self.on_change = on_change

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                results = await asyncio.gather(
                    *(
                        probe_http(
                            session,
                            address,
                            self.port,
                            self.probe.path,
                            self.probe.host_header,
                            self.probe.ok_statuses,
                            self.timeout,
                            self.tls,
                        )
                        for address in self.state.addresses
                    )
                )
                changed = False
                for address, ok in zip(self.state.addresses, results, strict=True):
                    changed |= self.state.record(address, ok)
                if changed:
                    self.on_change(self.state.serving())
                await asyncio.sleep(self.interval)
