"""Run every named check of a deployment at once and return the results in a stable order.

Order: dns.record, lb.port.*, node.*.*, http.redirect, tls.certificate, rancher.ping,
rancher.redirect, rancher.websocket, lb.spread, registration. Each check runs under a
guard of a few probe timeouts, and a check that raises is reported as failed with the
reason: a bug in one check must not hide the others, nor surface as a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

from rke2ha.check import catalog, checks, spread, verdicts_client
from rke2ha.check.catalog import CheckRule
from rke2ha.check.result import CheckResult
from rke2ha.check.target import CheckTarget
from rke2ha.dns import resolve_check
from rke2ha.dns.records import absolute
from rke2ha.dns.resolve_check import Answer


async def _guarded(
    check_id: str, rule: CheckRule, work: Awaitable[CheckResult], limit: float
) -> CheckResult:
    try:
        async with asyncio.timeout(limit):
            return await work
    except TimeoutError:
        return rule.failed(
            check_id,
            f"no result within {limit:g}s: a peer accepted or was asked but never answered",
            "make sure the peer answers, or allow it more time with --timeout",
        )
    except Exception as err:
        return rule.failed(
            check_id, f"check crashed: {type(err).__name__}: {err}", "report this as a bug"
        )


async def dns_record(target: CheckTarget) -> CheckResult:
    server = target.dns.server
    label = str(server) if server is not None else "the system resolver"
    if target.dns.problem is not None:
        return verdicts_client.dns_record(target.dns, target.hostname, Answer("NOERROR"), label)
    rdtypes = ["A", "AAAA"] if any(":" in value for value in target.dns.expected) else ["A"]
    if target.dns.kind != "A":
        rdtypes = ["A"]
    where = (server.host, server.port) if server is not None else None
    # `ask` is the blocking query `rke2ha dns check` uses, bounded by the probe timeout so a
    # silent server is reported as such rather than by the guard.
    answer = await asyncio.to_thread(
        resolve_check.ask, absolute(target.hostname), where, rdtypes, target.timeout
    )
    return verdicts_client.dns_record(target.dns, target.hostname, answer, label)


async def run_checks(target: CheckTarget, now: datetime | None = None) -> list[CheckResult]:
    """Every check, concurrently; a healthy lab takes a fraction of a second."""
    moment = now or datetime.now(UTC)
    limit = target.timeout * checks.GUARD_FACTOR

    def start(
        check_id: str, rule: CheckRule, work: Awaitable[CheckResult]
    ) -> asyncio.Task[CheckResult]:
        return asyncio.ensure_future(_guarded(check_id, rule, work, limit))

    first = [start("dns.record", catalog.DNS_RECORD, dns_record(target))]
    first += [
        start(f"lb.port.{port}", catalog.LB_PORT, checks.lb_port(target, port))
        for port in target.lb_ports
    ]
    node_tasks: dict[str, list[asyncio.Task[CheckResult]]] = {
        node.name: [
            start(
                f"node.{node.name}.{port}", catalog.NODE_PORT, checks.node_port(target, node, port)
            )
            for port in target.node_ports
        ]
        for node in target.nodes
    }
    rest = [
        start("http.redirect", catalog.HTTP_REDIRECT, checks.http_redirect(target)),
        start("tls.certificate", catalog.TLS_CERTIFICATE, checks.tls_certificate(target, moment)),
        start("rancher.ping", catalog.RANCHER_PING, checks.rancher_ping(target)),
        start("rancher.redirect", catalog.RANCHER_REDIRECT, checks.rancher_redirect(target)),
        start("rancher.websocket", catalog.RANCHER_WEBSOCKET, checks.rancher_websocket(target)),
    ]
    https_backend = target.backend_ports.get(443, 443)
    spread_inputs = {
        name: [
            task
            for port, task in zip(target.node_ports, tasks, strict=True)
            if port in (https_backend, 80)
        ]
        for name, tasks in node_tasks.items()
    }

    async def node_results() -> dict[str, list[CheckResult]]:
        # asyncio.wait, not gather: if lb.spread is cut off, the node checks must go on.
        waiting = [task for tasks in spread_inputs.values() for task in tasks]
        if waiting:
            await asyncio.wait(waiting)
        return {name: [task.result() for task in tasks] for name, tasks in spread_inputs.items()}

    # lb.spread waits for the node checks (each under `limit`), then samples for at most
    # spread.MAX_SECONDS; one more `limit` covers reading /status and closing connections.
    spread_limit = 2 * limit + spread.MAX_SECONDS
    rest.append(
        asyncio.ensure_future(
            _guarded(
                "lb.spread",
                catalog.LB_SPREAD,
                checks.lb_spread(target, node_results()),
                spread_limit,
            )
        )
    )
    rest.append(start("registration", catalog.REGISTRATION, checks.registration(target)))
    node_flat = [task for tasks in node_tasks.values() for task in tasks]
    return list(await asyncio.gather(*first, *node_flat, *rest))
