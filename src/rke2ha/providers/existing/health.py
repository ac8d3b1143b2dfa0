"""`up --wait`: poll the engine's own view of its backends until every node is up.

HAProxy reports server states on its stats page (`/;csv`), the built-in load balancer on
its admin `/status`; both are parsed here as plain data (`haproxy_counts`,
`builtin_counts`). Open-source nginx has no health view to read, which is said, not
papered over. Only the loopback admin address is ever fetched.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.request
from typing import Any

from rke2ha.errors import InvalidError
from rke2ha.invocation import spec_command
from rke2ha.providers.base import Reporter
from rke2ha.render.haproxy import _admin_address
from rke2ha.spec import Spec

POLL = 0.5
Counts = dict[str, tuple[int, int]]  # frontend -> (up, total)


def haproxy_counts(csv_text: str) -> Counts:
    """Per `rke2ha_<port>` backend: servers UP and servers in all, from HAProxy's CSV."""
    counts: Counts = {}
    rows = csv.DictReader(io.StringIO(csv_text.lstrip("# ")))
    for row in rows:
        proxy, server = row.get("pxname", ""), row.get("svname", "")
        if not proxy.startswith("rke2ha_") or server in ("FRONTEND", "BACKEND"):
            continue
        up, total = counts.get(proxy, (0, 0))
        counts[proxy] = (up + (row.get("status", "").startswith("UP")), total + 1)
    return counts


def builtin_counts(snapshot: Any) -> Counts:
    """Per frontend: backends up and backends in all, from the built-in `/status`."""
    counts: Counts = {}
    for frontend in snapshot.get("frontends", []) if isinstance(snapshot, dict) else []:
        backends = [b for b in frontend.get("backends", []) if isinstance(b, dict)]
        if not backends:
            continue  # a frontend that answers itself (the layer 7 redirect): nothing to wait for
        up = sum(1 for b in backends if b.get("serves", b.get("state") == "up"))
        counts[str(frontend.get("name", frontend.get("address")))] = (up, len(backends))
    return counts


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2.0) as answer:
        return str(answer.read().decode())


def _counts(spec: Spec) -> Counts:
    engine = spec.load_balancer.engine
    admin = _admin_address(spec)
    if engine == "haproxy":
        return haproxy_counts(_fetch(f"http://{admin}/;csv"))
    return builtin_counts(json.loads(_fetch(f"http://{spec.load_balancer.admin}/status")))


def _lines(counts: Counts) -> list[str]:
    return [f"{name}: {up}/{total} nodes up" for name, (up, total) in sorted(counts.items())]


def wait_healthy(spec: Spec, timeout: float, reporter: Reporter) -> list[str]:
    if spec.load_balancer.engine == "nginx":
        return [
            "nginx has no active health checks to wait for; "
            f"run `{spec_command(spec, 'check')}` to probe every node"
        ]
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while True:
        try:
            counts = _counts(spec)
            lines = _lines(counts)
            if counts and all(up == total for up, total in counts.values()):
                return lines
        except (OSError, ValueError) as err:
            lines = [f"admin endpoint not answering yet: {err}"]
        if time.monotonic() >= deadline:
            raise InvalidError(
                f"not every node is up after {timeout:g}s: {'; '.join(lines)}; "
                f"run `{spec_command(spec, 'check')}` to see why"
            )
        reporter.note("; ".join(lines))
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
