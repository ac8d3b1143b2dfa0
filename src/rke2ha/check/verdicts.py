"""Sans-I/O decisions: what a probe's observation means for each named check.

Every function takes what was seen (an observation, or the reason there was none, as a
string) and returns a `CheckResult` with a one-line detail and, on failure, a fix. No
sockets, no clocks: `now` is a value. The per-port meaning of "healthy" comes from
`rke2ha.healthplan` (`HttpProbe.ok_statuses`, `expect_body`), never re-derived here.
"""

from __future__ import annotations

from collections.abc import Iterable

from rke2ha.check import catalog
from rke2ha.check.catalog import CheckRule
from rke2ha.check.observations import HttpAnswer
from rke2ha.check.result import CheckResult
from rke2ha.healthplan import HttpProbe

# What one probe produced: an answer, or why there was none.
Seen = HttpAnswer | str


FIX_LB_DOWN = "{start} and make sure it listens on {where}"
FIX_LB_NO_NODE = (
    "the load balancer accepted the connection but no node answered: look at the node.* "
    "checks and {view}"
)
FIX_LB_SILENT = (
    "nothing answered in time: if the load balancer runs, no node behind it answers (look "
    "at the node.* checks and {view}); if it does not, start it and make sure it listens "
    "on {where}"
)
# Without the engine (tests, callers that do not know it): no page that may not exist.
VIEW_UNKNOWN = "the load balancer's view of its backends"
START_UNKNOWN = "start the load balancer"


def lb_start(provider: str, engine: str, up: str, serve: str) -> str:
    """How to start this load balancer, with `up` / `serve` the commands that run as
    printed (`rke2ha.invocation.spec_command`): the lab starts its own with `up`, the
    built-in one runs under `lb serve`; other engines are the operator's service."""
    if provider == "lab":
        return f"start the load balancer with the lab (`{up}`)"
    if engine == "builtin":
        return f"start the load balancer (`{serve}`)"
    return START_UNKNOWN


def lb_view(engine: str, admin: str | None) -> str:
    """Where this engine shows which nodes it sends traffic to, for a fix to point at.
    nginx (open source) has no such page: only its error log shows failed upstreams
    (https://nginx.org/en/docs/stream/ngx_stream_upstream_module.html, max_fails)."""
    if engine == "builtin":
        if admin:
            return f"the load balancer's admin /status (http://{admin}/status)"
        return "the load balancer's log (set load_balancer.admin for its /status)"
    if engine == "haproxy":
        return f"HAProxy's stats page (http://{admin}/)" if admin else "HAProxy's log"
    if engine == "nginx":
        return "nginx's error log (nginx has no status page for its upstreams)"
    if engine == "aws-nlb":
        return "the target group's health (aws elbv2 describe-target-health)"
    return VIEW_UNKNOWN


def lb_fix(seen: str, where: str, view: str = VIEW_UNKNOWN, start: str = START_UNKNOWN) -> str:
    """The fix when no HTTP answer came through the load balancer. A close or a reset
    (RST comes only on an established connection) means it accepted: it is up, and no
    node behind it answered. Silence can be either. A refusal means it is not listening."""
    if "closed the connection" in seen or seen.endswith(" reset"):
        return FIX_LB_NO_NODE.format(view=view)
    if seen.startswith("no answer from"):
        return FIX_LB_SILENT.format(view=view, where=where)
    return FIX_LB_DOWN.format(start=start, where=where)


def same_name(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def join(values: Iterable[str]) -> str:
    items = sorted(values)
    return ", ".join(items) if items else "nothing"


# ---- one HTTP answer against a health probe ----------------------------------------------


def _matches(probe: HttpProbe, answer: HttpAnswer) -> bool:
    if answer.status not in probe.ok_statuses:
        return False
    return probe.expect_body is None or answer.text == probe.expect_body


def said(answer: HttpAnswer) -> str:
    text = answer.text.replace("\n", " ")
    body = f" {text[:40]!r}" if text else ""
    return f"HTTP {answer.status}{body}"


def ingress_health(check_id: str, seen: Seen, probe: HttpProbe, where: str) -> CheckResult:
    """Node port 80: the ingress's own health answer from its catch-all server."""
    rule = catalog.NODE_PORT
    asked = f"GET {probe.path} Host {probe.host_header or 'the node address'}"
    if isinstance(seen, str):
        return rule.failed(check_id, seen, f"start RKE2 on {where} (systemctl start rke2-server)")
    if _matches(probe, seen):
        return rule.passed(check_id, f"ingress: {asked} -> {said(seen)}")
    return rule.failed(
        check_id,
        f"ingress: {asked} -> {said(seen)}; want {join(map(str, probe.ok_statuses))}",
        "check the ingress controller pod on that node (kubectl -n kube-system get pods) "
        "and that spec.ingress matches it (nginx: /healthz -> 200, traefik: /ping -> 404 or "
        "200; README: Health checks)",
    )


def readyz(
    check_id: str,
    seen: Seen,
    probe: HttpProbe,
    *,
    token_sent: bool,
    rule: CheckRule = catalog.NODE_PORT,
) -> CheckResult:
    """6443 /readyz. 200: ready. 401 without a token: answers, readiness unknown (a pass
    that says so) unless the spec expects anonymous access. 401 with a token: rejected."""
    if isinstance(seen, str):
        return rule.failed(
            check_id, f"apiserver: {seen}", "start rke2-server on that node and read its journal"
        )
    if seen.status == 200:
        return rule.passed(check_id, "apiserver ready: /readyz -> 200")
    if seen.status == 401 and token_sent:
        return rule.failed(
            check_id,
            "apiserver answers but refused the bearer token: /readyz -> 401",
            "give a token the apiserver accepts (--token FILE or "
            "load_balancer.health.token_file); any authenticated identity may read /readyz",
        )
    if seen.status == 401 and 401 in probe.ok_statuses:
        return rule.passed(
            check_id,
            "apiserver answers, readiness unknown (/readyz -> 401 without credentials; "
            "pass --token FILE to see readiness)",
        )
    if seen.status == 401:
        return rule.failed(
            check_id,
            "apiserver refused an anonymous /readyz (401) though the spec expects anonymous "
            "health endpoints",
            "apply the authentication-config from `rke2ha render` (rke2.anonymous_health) "
            "or give --token FILE",
        )
    return rule.failed(
        check_id,
        f"apiserver not ready: /readyz -> {said(seen)}",
        "the node has not joined or etcd/apiserver is unhealthy: read "
        "`journalctl -u rke2-server` on that node",
    )


def supervisor_ping(
    check_id: str, seen: Seen, probe: HttpProbe, *, rule: CheckRule = catalog.NODE_PORT
) -> CheckResult:
    """9345 /ping must answer `pong` (no credentials needed)."""
    if isinstance(seen, str):
        return rule.failed(
            check_id, f"supervisor: {seen}", "start rke2-server on that node; 9345 must listen"
        )
    if _matches(probe, seen):
        return rule.passed(check_id, f"supervisor: /ping -> {said(seen)}")
    return rule.failed(
        check_id,
        f"supervisor: /ping -> {said(seen)}; want HTTP 200 'pong'",
        "something other than the RKE2 supervisor listens on 9345 there",
    )


def rancher_ping(
    check_id: str,
    seen: Seen,
    rule: CheckRule,
    where: str,
    view: str = VIEW_UNKNOWN,
    start: str = START_UNKNOWN,
) -> CheckResult:
    """Rancher's /ping answers `pong`; reached through the ingress with the Rancher Host."""
    if isinstance(seen, str):
        fix = (
            lb_fix(seen, where, view, start)
            if rule is catalog.RANCHER_PING
            else "start RKE2 (and its ingress) on that node"
        )
        return rule.failed(check_id, seen, fix)
    if seen.status == 200 and seen.text == "pong":
        return rule.passed(check_id, f"https /ping -> 200 'pong' ({seen.tls_version})")
    return rule.failed(
        check_id,
        f"https /ping -> {said(seen)}; want 200 'pong'",
        "Rancher is not behind the ingress for this hostname: check the Rancher pods "
        "(kubectl -n cattle-system get pods) and that the Ingress host is the spec's hostname",
    )


def tcp_open(check_id: str, seen: str | None, rule: CheckRule, fix: str) -> CheckResult:
    """Ports with no application check: a TCP connect must succeed."""
    if seen is None:
        return rule.passed(check_id, "TCP connect succeeded")
    return rule.failed(check_id, seen, fix)


# ---- lb.port.<port> --------------------------------------------------------------------


def lb_http(
    check_id: str,
    seen: Seen,
    where: str,
    *,
    tls: bool,
    view: str = VIEW_UNKNOWN,
    start: str = START_UNKNOWN,
) -> CheckResult:
    """80/443 through the LB: any answer below 500 shows a node (its ingress) was reached."""
    rule = catalog.LB_PORT
    if isinstance(seen, str):
        return rule.failed(check_id, seen, lb_fix(seen, where, view, start))
    if seen.status >= 500:
        return rule.failed(
            check_id, f"{said(seen)}: no node behind it answered", FIX_LB_NO_NODE.format(view=view)
        )
    how = f"TLS {seen.tls_version}, " if tls else ""
    return rule.passed(check_id, f"{how}a node answered {said(seen)}")


def lb_readyz(
    check_id: str, seen: Seen, where: str, view: str = VIEW_UNKNOWN, start: str = START_UNKNOWN
) -> CheckResult:
    """6443 through the LB: 200 or 401 shows that an apiserver answered."""
    rule = catalog.LB_PORT
    if isinstance(seen, str):
        return rule.failed(check_id, seen, lb_fix(seen, where, view, start))
    if seen.status == 200:
        return rule.passed(check_id, "an apiserver answered: /readyz -> 200 (ready)")
    if seen.status == 401:
        return rule.passed(
            check_id, "an apiserver answered: /readyz -> 401 (up, readiness unknown)"
        )
    return rule.failed(
        check_id,
        f"/readyz -> {said(seen)}; want 200 or 401 from an apiserver",
        FIX_LB_NO_NODE.format(view=view),
    )


def lb_ping(
    check_id: str,
    seen: Seen,
    probe: HttpProbe,
    where: str,
    view: str = VIEW_UNKNOWN,
    start: str = START_UNKNOWN,
) -> CheckResult:
    """9345 through the LB: a supervisor answers /ping -> pong."""
    if isinstance(seen, str):
        return catalog.LB_PORT.failed(check_id, seen, lb_fix(seen, where, view, start))
    return supervisor_ping(check_id, seen, probe, rule=catalog.LB_PORT)


# ---- registration --------------------------------------------------------------------


def registration(
    ping: Seen,
    ready: Seen,
    supervisor: HttpProbe,
    readyz_probe: HttpProbe,
    *,
    token_sent: bool,
    address: str,
    where: str,
    view: str = VIEW_UNKNOWN,
    start: str = START_UNKNOWN,
) -> CheckResult:
    """Joins go to https://<fixed address>:9345: 9345 /ping and 6443 /readyz must answer."""
    rule, check_id = catalog.REGISTRATION, "registration"
    problems: list[tuple[str, str]] = []
    details: list[str] = []
    for seen, judged in (
        (ping, supervisor_ping(check_id, ping, supervisor, rule=rule)),
        (ready, readyz(check_id, ready, readyz_probe, token_sent=token_sent, rule=rule)),
    ):
        if not judged.failed:
            details.append(judged.detail)
        elif isinstance(seen, str):
            # Not even a connection through the load balancer: the fix is there, not on a node.
            problems.append((judged.detail, lb_fix(seen, where, view, start)))
        else:
            problems.append((judged.detail, judged.fix))
    if problems:
        return rule.failed(
            check_id,
            "; ".join(detail for detail, _ in problems) + f" (registration address {address})",
            " and ".join(dict.fromkeys(fix for _, fix in problems)),
        )
    return rule.passed(check_id, "; ".join(details))
