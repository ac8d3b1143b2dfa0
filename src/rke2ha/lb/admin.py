"""The admin endpoint: `/metrics` (Prometheus), `/status` (JSON), `/` (a human stats page),
and `POST /nodes/NODE/drain` / `.../enable`: maintenance, accepted from loopback only.

Everything is rendered from one snapshot (`Snapshot`, a plain dict built by the server or,
with `--workers`, by the supervisor from the workers' shared counters), so the three views
never disagree. Metrics are produced at scrape time by a custom collector reading that
snapshot: the data plane only bumps plain ints. Bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import html
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from rke2ha.lb.health_state import State

Snapshot = dict[str, Any]
SnapshotSource = Callable[[], Snapshot]
# (node name, drain?) -> frontends touched; KeyError for a name no backend has.
MaintenanceControl = Callable[[str, bool], list[str]]
STATES = [s.value for s in State]


class SnapshotCollector(Collector):
    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snap = self.source()
        fe_labels = ["frontend"]
        be_labels = ["frontend", "backend"]
        fe_active = GaugeMetricFamily(
            "rke2ha_lb_frontend_connections_active", "Open client connections", labels=fe_labels
        )
        fe_total = CounterMetricFamily(
            "rke2ha_lb_frontend_connections", "Accepted client connections", labels=fe_labels
        )
        fe_bytes = CounterMetricFamily(
            "rke2ha_lb_frontend_bytes",
            "Bytes relayed (direction: from_client or to_client)",
            labels=[*fe_labels, "direction"],
        )
        retries = CounterMetricFamily(
            "rke2ha_lb_retries", "Connects retried on another backend", labels=fe_labels
        )
        failovers = CounterMetricFamily(
            "rke2ha_lb_failovers",
            "Connections served by a backend other than the first choice",
            labels=fe_labels,
        )
        failed = CounterMetricFamily(
            "rke2ha_lb_failed_connections",
            "Clients closed because no backend could be reached",
            labels=fe_labels,
        )
        be_active = GaugeMetricFamily(
            "rke2ha_lb_backend_connections_active", "Open backend connections", labels=be_labels
        )
        be_total = CounterMetricFamily(
            "rke2ha_lb_backend_connections", "Connections made to the backend", labels=be_labels
        )
        be_bytes = CounterMetricFamily(
            "rke2ha_lb_backend_bytes",
            "Bytes relayed (direction: to_backend or from_backend)",
            labels=[*be_labels, "direction"],
        )
        be_up = GaugeMetricFamily(
            "rke2ha_lb_backend_up", "1 when the backend receives new connections", labels=be_labels
        )
        be_state = StateSetMetricFamily(
            "rke2ha_lb_backend_health", "Health state of the backend", labels=be_labels
        )
        be_latency = GaugeMetricFamily(
            "rke2ha_lb_backend_check_duration_seconds",
            "Duration of the last active check",
            labels=be_labels,
        )
        be_fail = CounterMetricFamily(
            "rke2ha_lb_backend_connect_failures",
            "Connects refused or timed out (passive check)",
            labels=be_labels,
        )
        be_checks_failed = CounterMetricFamily(
            "rke2ha_lb_backend_checks_failed", "Active checks that failed", labels=be_labels
        )
        be_changes = CounterMetricFamily(
            "rke2ha_lb_backend_state_changes", "Health state changes", labels=be_labels
        )
        be_since = GaugeMetricFamily(
            "rke2ha_lb_backend_state_age_seconds",
            "Seconds since the backend entered its current health state",
            labels=be_labels,
        )
        for fe in snap["frontends"]:
            name = fe["name"]
            fe_active.add_metric([name], fe["active"])
            fe_total.add_metric([name], fe["total"])
            fe_bytes.add_metric([name, "from_client"], fe["bytes_from_clients"])
            fe_bytes.add_metric([name, "to_client"], fe["bytes_to_clients"])
            retries.add_metric([name], fe["retries"])
            failovers.add_metric([name], fe["failovers"])
            failed.add_metric([name], fe["failed"])
            for be in fe["backends"]:
                labels = [name, be["address"]]
                be_active.add_metric(labels, be["active"])
                be_total.add_metric(labels, be["total"])
                be_bytes.add_metric([*labels, "to_backend"], be["bytes_to_backend"])
                be_bytes.add_metric([*labels, "from_backend"], be["bytes_from_backend"])
                be_up.add_metric(labels, 1 if be["serves"] else 0)
                health = be.get("health", be["state"])
                be_state.add_metric(labels, {s: s == health for s in STATES})
                be_latency.add_metric(labels, be["check_latency_s"])
                be_fail.add_metric(labels, be["connect_failures"])
                be_checks_failed.add_metric(labels, be["checks_failed"])
                be_changes.add_metric(labels, be["changes"])
                be_since.add_metric(labels, be["since_age_s"])
        yield from (fe_active, fe_total, fe_bytes, retries, failovers, failed)
        yield from (be_active, be_total, be_bytes, be_up, be_state, be_latency, be_fail)
        yield from (be_checks_failed, be_changes, be_since)


_COLOURS = {
    "up": "#c8f7c5",
    "falling": "#ffe9a8",
    "rising": "#d6ecff",
    "down": "#ffc9c9",
    "draining": "#e0e0e0",
    "drain": "#c0c0ff",
}


def age(seconds: float) -> str:
    """A short age for people: 42 s, 5 min, 3.2 h, 2.0 d."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def render_html(snap: Snapshot) -> str:
    """A stats page in the spirit of HAProxy's: one table per frontend, one row per node."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='5'><title>rke2ha load balancer</title>",
        "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;"
        "margin-bottom:1.5em}th,td{border:1px solid #999;padding:2px 6px;text-align:right}"
        "th{background:#446;color:#fff}td.l{text-align:left}</style></head><body>",
        f"<h1>rke2ha load balancer</h1><p>pid {snap['pid']} · up {snap['uptime_s']:.0f} s · "
        f"workers {snap['workers']} · relay {esc(snap['relay'])} · pipes in use "
        f"{snap['pipes']['in_use']}/{snap['pipes']['limit']}</p>",
    ]
    for fe in snap["frontends"]:
        parts.append(
            f"<h2>{esc(fe['name'])} — {esc(fe['address'])}</h2><p>{esc(fe['health'])}; "
            f"balance {esc(fe['balance'])}; active {fe['active']}, total {fe['total']}, "
            f"retries {fe['retries']}, failovers {fe['failovers']}, failed {fe['failed']}</p>"
        )
        if not fe["backends"]:
            parts.append("<p>No backends: this frontend answers every request itself.</p>")
            continue
        parts.append(
            "<table><tr><th>backend</th><th>address</th><th>state</th><th>since</th>"
            "<th>changes</th><th>went down</th><th>active</th>"
            "<th>total</th><th>to backend</th><th>from backend</th><th>connect fails</th>"
            "<th>check ms</th><th class='l'>last change</th><th class='l'>last check</th></tr>"
        )
        for be in fe["backends"]:
            colour = _COLOURS.get(be["state"], "#fff")
            parts.append(
                f"<tr style='background:{colour}'><td class='l'>{esc(be['name'])}</td>"
                f"<td class='l'>{esc(be['address'])}</td><td>{esc(be['state'])}</td>"
                f"<td class='l'>{esc(be['since'])} ({age(be['since_age_s'])} ago)</td>"
                f"<td>{be['changes']}</td><td>{be['went_down']}</td>"
                f"<td>{be['active']}</td><td>{be['total']}</td><td>{be['bytes_to_backend']}</td>"
                f"<td>{be['bytes_from_backend']}</td><td>{be['connect_failures']}</td>"
                f"<td>{be['check_latency_s'] * 1000:.1f}</td><td class='l'>{esc(be['reason'])}</td>"
                f"<td class='l'>{esc(be['last_check'])}</td></tr>"
            )
        parts.append("</table>")
        recent = [(be["name"], c) for be in fe["backends"] for c in be["recent_changes"]]
        if recent:
            # Newest first across the frontend's backends: a flapping node shows its pattern.
            recent.sort(key=lambda item: str(item[1]["at"]), reverse=True)
            parts.append("<p>Recent state changes:</p><ul>")
            parts += [
                f"<li>{esc(c['at'])} {esc(name)}: {esc(c['from'])} → {esc(c['to'])}: "
                f"{esc(c['reason'])}</li>"
                for name, c in recent
            ]
            parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def build_app(source: SnapshotSource, control: MaintenanceControl | None = None) -> web.Application:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(source))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response(source())

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=render_html(source()), content_type="text/html")

    async def maintenance(request: web.Request) -> web.Response:
        # Reading stats is harmless; taking nodes out is not: only from this machine, even
        # when the admin endpoint listens on a wider address.
        if not _loopback(request.remote):
            return web.json_response(
                {"error": "maintenance is allowed from loopback only"}, status=403
            )
        if control is None:
            return web.json_response({"error": "this process takes no maintenance"}, status=404)
        node, action = request.match_info["node"], request.match_info["action"]
        try:
            frontends = control(node, action == "drain")
        except KeyError:
            names = sorted({b["name"] for fe in source()["frontends"] for b in fe["backends"]})
            return web.json_response({"error": f"no node {node!r}", "nodes": names}, status=404)
        return web.json_response({"node": node, "action": action, "frontends": frontends})

    app = web.Application()
    app.router.add_post("/nodes/{node}/{action:drain|enable}", maintenance)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/", page)
    return app


async def start_admin(
    source: SnapshotSource, host: str, port: int, control: MaintenanceControl | None = None
) -> web.AppRunner:
    """Serve the admin app on host:port; the caller `await runner.cleanup()`s it."""
    runner = web.AppRunner(build_app(source, control), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True)
    await site.start()
    return runner
