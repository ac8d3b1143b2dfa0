"""The named checks of a live deployment: each one probes, then asks a verdict.

Each check is a coroutine that probes (see `probes`) with the target's timeout and hands
what it saw to a verdict (`verdicts`, `verdicts_client`). `runner` starts them all at
once. `lb.spread` is given the node checks' results, because "every healthy node gets
traffic" needs to know which nodes are healthy.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from datetime import datetime

from rke2ha.check import catalog, loops, probes, spread, verdicts, verdicts_client
from rke2ha.check.catalog import CheckRule
from rke2ha.check.observations import HttpAnswer, TlsObservation, WebsocketAnswer
from rke2ha.check.probes import ProbeError
from rke2ha.check.result import CheckResult

# Re-exported: the drill reads the same header.
from rke2ha.check.spread import NODE_HEADER as NODE_HEADER
from rke2ha.check.target import CheckTarget, Endpoint, NodeTarget
from rke2ha.lb.proxyproto import proxy_v2_local_header

REDIRECT_PROBE_PATH = "/rke2ha-check/redirect?probe=1"
WEBSOCKET_PATH = "/v3/subscribe"
WEBSOCKET_MESSAGE_WAIT = 0.5
# A check that outlives this many probe timeouts is stuck: report it, never wait on it.
GUARD_FACTOR = 3


async def _get(
    endpoint: Endpoint,
    path: str,
    target: CheckTarget,
    *,
    tls: bool,
    token: str | None = None,
    host: str | None = None,
    proxy: bool = False,
) -> HttpAnswer | str:
    """GET with Host (and SNI) `host`, by default the Rancher hostname; `proxy`: a PROXY v2
    header first, as the load balancer sends to a node's ingress with `send_proxy`."""
    try:
        return await probes.http_get(
            endpoint,
            path,
            proxy_header=proxy_v2_local_header() if proxy else None,
            host=host or target.hostname,
            tls=probes.insecure_context() if tls else None,
            token=token,
            timeout=target.timeout,
        )
    except ProbeError as err:
        return str(err)


async def _tcp(endpoint: Endpoint, target: CheckTarget) -> str | None:
    try:
        await probes.tcp_connect(endpoint, timeout=target.timeout)
    except ProbeError as err:
        return str(err)
    return None


# ---- node.<name>.<port> ----------------------------------------------------------------


async def node_port(target: CheckTarget, node: NodeTarget, port: int) -> CheckResult:
    result = await _node_port(target, node, port)
    if target.is_lab and result.failed and _unreachable(result.detail):
        # In the lab the node is an emulator process: the fix is the lab's own command.
        restart = target.command("lab", "restart", node.name)
        thaw = target.command("lab", "thaw", node.name)
        fix = f"the {node.name} emulator is down or frozen: `{restart}` (or `{thaw}`)"
        return dataclasses.replace(result, fix=fix)
    return result


def _unreachable(detail: str) -> bool:
    return any(word in detail for word in ("refused", "no answer", "reset", "unreachable"))


async def _node_port(target: CheckTarget, node: NodeTarget, port: int) -> CheckResult:
    check_id = f"node.{node.name}.{port}"
    endpoint = target.node(node, port)
    if endpoint is None:
        return catalog.NODE_PORT.skipped(
            check_id,
            f"skipped: {node.name} has no address yet",
            f"run `{target.command('up')}` first (the provider assigns it)",
        )
    where = f"{node.name} at {endpoint}"
    if port == 80:
        # The health plan's request: no Rancher Host, so the ingress's catch-all server
        # answers (the node's own address stands in, as the built-in load balancer sends).
        ingress = target.ingress
        host = ingress.host_header or str(endpoint).rpartition(":")[0]
        seen = await _get(
            endpoint, ingress.path, target, tls=False, host=host, proxy=ingress.send_proxy
        )
        return verdicts.ingress_health(check_id, seen, ingress, where)
    if port == 443:
        ping = target.rancher_ping
        seen = await _get(endpoint, ping.path, target, tls=True, proxy=ping.send_proxy)
        return verdicts.rancher_ping(check_id, seen, catalog.NODE_PORT, where)
    if port == 6443:
        token = target.readyz_token
        seen = await _get(endpoint, target.readyz.path, target, tls=True, token=token)
        return verdicts.readyz(check_id, seen, target.readyz, token_sent=token is not None)
    if port == 9345:
        seen = await _get(endpoint, target.supervisor.path, target, tls=True)
        return verdicts.supervisor_ping(check_id, seen, target.supervisor)
    return verdicts.tcp_open(
        check_id, await _tcp(endpoint, target), catalog.NODE_PORT, f"open port {port} on {where}"
    )


# ---- checks through the load balancer --------------------------------------------------


def _no_lb(rule: CheckRule, check_id: str, target: CheckTarget) -> CheckResult:
    return rule.skipped(
        check_id,
        "skipped: the load balancer address is not known yet",
        f"run `{target.command('up')}` first, or set load_balancer.address",
    )


def _no_port(rule: CheckRule, check_id: str, port: int) -> CheckResult:
    return rule.skipped(
        check_id,
        f"skipped: port {port} is not in load_balancer.ports",
        f"add {port} to load_balancer.ports",
    )


async def lb_port(target: CheckTarget, port: int) -> CheckResult:
    check_id = f"lb.port.{port}"
    endpoint = target.lb(port)
    if endpoint is None:
        return _no_lb(catalog.LB_PORT, check_id, target)
    where = str(endpoint)
    if port == 80:
        seen = await _get(endpoint, target.ingress.path, target, tls=False)
        return verdicts.lb_http(
            check_id, seen, where, tls=False, view=target.lb_view, start=target.lb_start
        )
    if port == 443:
        seen = await _get(endpoint, "/ping", target, tls=True)
        return verdicts.lb_http(
            check_id, seen, where, tls=True, view=target.lb_view, start=target.lb_start
        )
    if port == 6443:
        seen = await _get(endpoint, "/readyz", target, tls=True, token=target.readyz_token)
        return verdicts.lb_readyz(check_id, seen, where, target.lb_view, target.lb_start)
    if port == 9345:
        seen = await _get(endpoint, target.supervisor.path, target, tls=True)
        return verdicts.lb_ping(
            check_id, seen, target.supervisor, where, target.lb_view, target.lb_start
        )
    return verdicts.tcp_open(
        check_id,
        await _tcp(endpoint, target),
        catalog.LB_PORT,
        verdicts.FIX_LB_DOWN.format(start=target.lb_start, where=where),
    )


async def http_redirect(target: CheckTarget) -> CheckResult:
    check_id = "http.redirect"
    if 80 not in target.lb_ports:
        return _no_port(catalog.HTTP_REDIRECT, check_id, 80)
    endpoint = target.lb(80)
    if endpoint is None:
        return _no_lb(catalog.HTTP_REDIRECT, check_id, target)
    seen = await _get(endpoint, REDIRECT_PROBE_PATH, target, tls=False)
    return verdicts_client.http_redirect(
        seen, target.hostname, REDIRECT_PROBE_PATH, {443, target.port(443)}
    )


async def tls_certificate(target: CheckTarget, now: datetime) -> CheckResult:
    check_id = "tls.certificate"
    if 443 not in target.lb_ports:
        return _no_port(catalog.TLS_CERTIFICATE, check_id, 443)
    endpoint = target.lb(443)
    if endpoint is None:
        return _no_lb(catalog.TLS_CERTIFICATE, check_id, target)
    trust = f"--ca {target.ca_file}" if target.ca_file else "the system roots"
    try:
        seen: TlsObservation | str = await probes.tls_inspect(
            endpoint, target.hostname, ca_file=target.ca_file, timeout=target.timeout
        )
    except ProbeError as err:
        seen = str(err)
    return verdicts_client.tls_certificate(seen, target.hostname, now, trust)


async def rancher_ping(target: CheckTarget) -> CheckResult:
    check_id = "rancher.ping"
    endpoint = target.lb(443)
    if endpoint is None:
        return _no_lb(catalog.RANCHER_PING, check_id, target)
    seen = await _get(endpoint, target.rancher_ping.path, target, tls=True)
    return verdicts.rancher_ping(
        check_id, seen, catalog.RANCHER_PING, str(endpoint), target.lb_view, target.lb_start
    )


async def rancher_redirect(target: CheckTarget) -> CheckResult:
    """Rancher's UI through the load balancer, following redirects that stay on its URL;
    a path asked for twice is a redirect loop (`loops`)."""
    endpoint = target.lb(443)
    if endpoint is None:
        return _no_lb(catalog.RANCHER_REDIRECT, loops.CHECK_ID, target)
    https_ports = {443, endpoint.port}
    hops: list[loops.Hop] = []
    path: str | None = loops.START_PATH
    while path is not None and len(hops) <= loops.MAX_HOPS:
        if any(hop.path == path for hop in hops):
            return loops.verdict(hops, path, target.layer, str(endpoint), target.lb_start)
        seen = await _get(endpoint, path, target, tls=True)
        if isinstance(seen, str):
            after = f"GET {path} after {len(hops)} redirect(s): " if hops else ""
            return loops.verdict(after + seen, None, target.layer, str(endpoint), target.lb_start)
        hops.append(loops.Hop(path, seen))
        path = loops.next_hop(seen, target.hostname, https_ports)
    return loops.verdict(hops, None, target.layer, str(endpoint), target.lb_start)


async def rancher_websocket(target: CheckTarget) -> CheckResult:
    check_id = "rancher.websocket"
    endpoint = target.lb(443)
    if endpoint is None:
        return _no_lb(catalog.RANCHER_WEBSOCKET, check_id, target)
    # The lab's Rancher stand-in streams events to anyone; a real Rancher needs a token.
    if not target.is_lab and target.rancher_token is None:
        return verdicts_client.websocket_skipped()
    try:
        seen: WebsocketAnswer | str = await probes.websocket_open(
            endpoint,
            WEBSOCKET_PATH,
            hostname=target.hostname,
            token=target.rancher_token,
            timeout=target.timeout,
            message_wait=WEBSOCKET_MESSAGE_WAIT,
        )
        status = None
    except probes.WebsocketRefused as err:
        seen, status = str(err), err.status
    except ProbeError as err:
        seen, status = str(err), None
    return verdicts_client.websocket(seen, status, WEBSOCKET_MESSAGE_WAIT)


async def lb_spread(
    target: CheckTarget, node_results: Awaitable[dict[str, list[CheckResult]]]
) -> CheckResult:
    """Every healthy node answers some of the requests through the load balancer.

    Sampling (`spread.sample`) is bounded and waits, within its bound, for a healthy node
    the load balancer has not taken back into rotation yet; the verdict is
    `verdicts_client.spread`.
    """
    check_id = "lb.spread"
    if target.lb(443) is None:
        return _no_lb(catalog.LB_SPREAD, check_id, target)
    healthy = {name for name, results in (await node_results).items() if all(r.ok for r in results)}
    seen = await spread.sample(target, healthy)
    return verdicts_client.spread(
        healthy,
        seen,
        header=NODE_HEADER,
        lab=target.is_lab,
        known=[node.name for node in target.nodes],
        view=target.lb_view,
    )


async def registration(target: CheckTarget) -> CheckResult:
    check_id = "registration"
    ping_at, ready_at = target.lb(9345), target.lb(6443)
    if ping_at is None or ready_at is None:
        return _no_lb(catalog.REGISTRATION, check_id, target)
    token = target.readyz_token
    ping, ready = await asyncio.gather(
        _get(ping_at, target.supervisor.path, target, tls=True),
        _get(ready_at, target.readyz.path, target, tls=True, token=token),
    )
    return verdicts.registration(
        ping,
        ready,
        target.supervisor,
        target.readyz,
        token_sent=token is not None,
        address=f"https://{target.hostname}:{ping_at.port}",
        where=f"{ping_at} and {ready_at}",
        view=target.lb_view,
        start=target.lb_start,
    )
