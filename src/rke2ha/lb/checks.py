"""Active health checks: probe every backend on a timer and feed the results to its machine.

What to probe comes from `LbConfig` (built from `rke2ha.healthplan` for a spec): a TCP
connect, or an HTTP(S) `GET` with path, Host header, bearer token, accepted statuses and
an expected body. All probes of a backend must pass (9345 needs the supervisor's `/ping`
*and* the node's 6443 `/readyz`).

TLS probes finish the handshake and close with close_notify: a probe that connects and
drops the TCP connection mid-handshake fills RKE2's logs with "TLS handshake error" lines.
Certificates are not verified: the probe asks "is this node ready?", not "is this node
who it claims to be?" (clients verify the nodes themselves; the nodes' serving certs are
signed by the cluster CA the load balancer does not hold).

The response is read with httptools (llhttp), not a hand-written parser.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from dataclasses import dataclass

import httptools

from rke2ha.lb.config import HealthConfig, Probe
from rke2ha.lb.health_state import Event
from rke2ha.lb.pool import Backend, Pool
from rke2ha.lb.proxyproto import proxy_v2_local_header

log = logging.getLogger("rke2ha.lb")

MAX_RESPONSE = 64 * 1024
USER_AGENT = "rke2ha-lb-check"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _client_tls()


class _Response:
    """httptools callbacks collecting status and body of one response."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        if len(self.body) < MAX_RESPONSE:
            self.body.extend(body)

    def on_message_complete(self) -> None:
        self.complete = True


def build_request(host: str, port: int, probe: Probe) -> bytes:
    """The probe's request bytes; the Host header defaults to the node address."""
    host_header = probe.host_header or (f"[{host}]" if ":" in host else host)
    lines = [
        f"GET {probe.path} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {USER_AGENT}",
        "Accept: */*",
        "Connection: close",
    ]
    if probe.token:
        lines.append(f"Authorization: Bearer {probe.token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def judge(probe: Probe, status: int, body: bytes) -> ProbeResult:
    """Pure verdict on a response (unit-tested without sockets)."""
    if status not in probe.ok_statuses:
        expected = "|".join(map(str, probe.ok_statuses))
        return ProbeResult(False, f"{probe.kind} {probe.path}: status {status}, want {expected}")
    if probe.expect_body is not None:
        text = body.decode("utf-8", "replace").strip()
        if text != probe.expect_body:
            return ProbeResult(
                False, f"{probe.kind} {probe.path}: body {text[:40]!r}, want {probe.expect_body!r}"
            )
    note = " (apiserver up, readiness unknown)" if status == 401 else ""
    return ProbeResult(True, f"{probe.kind} {probe.path}: {status}{note}")


async def run_probe(host: str, port: int, probe: Probe, timeout: float) -> ProbeResult:
    """One probe against host:port, bounded by `timeout` seconds."""
    target = probe.port or port
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _connect(host, target, probe)
            if probe.kind == "tcp":
                return ProbeResult(True, f"tcp connect {host}:{target}")
            writer.write(build_request(host, target, probe))
            response = _Response()
            parser = httptools.HttpResponseParser(response)
            received = 0
            while not response.complete and received < MAX_RESPONSE:
                data = await reader.read(16384)
                if not data:
                    break
                received += len(data)
                parser.feed_data(data)
            if not response.complete:
                return ProbeResult(False, f"{probe.kind} {probe.path}: incomplete response")
            return judge(probe, parser.get_status_code(), bytes(response.body))
    except TimeoutError:
        return ProbeResult(False, f"{probe.kind} {host}:{target}: timeout {timeout:g}s")
    except httptools.HttpParserError as err:
        return ProbeResult(False, f"{probe.kind} {probe.path}: bad HTTP response ({err})")
    except ssl.SSLError as err:
        return ProbeResult(False, f"https {host}:{target}: TLS error ({err.reason or err})")
    except OSError as err:
        return ProbeResult(False, f"{probe.kind} {host}:{target}: {err.strerror or err}")
    finally:
        if writer is not None:
            await _close(writer)


async def _connect(
    host: str, port: int, probe: Probe
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect as the traffic does: a PROXY v2 header first when `send_proxy` (an ingress
    configured for it refuses a connection without one), then TLS for https."""
    tls = _TLS if probe.kind == "https" else None
    if not probe.send_proxy:
        return await asyncio.open_connection(host, port, ssl=tls)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(proxy_v2_local_header())
    if tls is not None:
        await writer.start_tls(tls)
    return reader, writer


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close cleanly (TLS close_notify, then FIN), but never wait long for the peer."""
    writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except (TimeoutError, OSError, ssl.SSLError):
        pass


async def check_backend(backend: Backend, health: HealthConfig) -> tuple[ProbeResult, float]:
    """Run every probe of `backend` (all must pass); return the verdict and latency."""
    started = time.monotonic()
    results = []
    for probe in health.probes:
        result = await run_probe(backend.config.host, backend.config.port, probe, health.timeout)
        results.append(result)
        if not result.ok:
            break
    latency = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    if failed:
        return failed[0], latency
    return ProbeResult(True, "; ".join(r.reason for r in results)), latency


class Checker:
    """One check loop per backend of `pool`; `sync()` after the pool changed."""

    def __init__(self, pool: Pool, health: HealthConfig) -> None:
        self.pool = pool
        self.health = health
        self._tasks: dict[Backend, asyncio.Task[None]] = {}

    def sync(self) -> None:
        serving = set(self.pool.backends)
        for backend in list(self._tasks):
            if backend not in serving:
                self._tasks.pop(backend).cancel()
        for backend in serving:
            if backend not in self._tasks:
                self._tasks[backend] = asyncio.create_task(self._loop(backend))

    async def _loop(self, backend: Backend) -> None:
        health = self.health
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        while True:
            result, latency = await check_backend(backend, health)
            backend.check_latency = latency
            backend.last_check = result.reason
            if not result.ok:
                backend.checks_failed += 1
            backend.handle(Event.CHECK_OK if result.ok else Event.CHECK_FAIL, result.reason)
            # Checks start at a fixed rate (a slow check does not push the next one back),
            # so a frozen node is out after about interval x fall + timeout. Jitter spreads
            # the checks of many backends and load balancers over time.
            spread = 1 + random.uniform(-health.jitter, health.jitter)
            next_start = max(next_start + health.interval * spread, loop.time())
            await asyncio.sleep(next_start - loop.time())

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
