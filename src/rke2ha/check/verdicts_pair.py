"""Verdicts on a keepalived pair of load balancer hosts: `HostView`s in, `CheckResult`s out.

Sans-I/O (the views come from `pair_probe`). Three questions, each its own check:
- `lb.pair.vip`: exactly one host holds the virtual IP (none: nobody serves it; two: the
  hosts do not hear each other's adverts, "split brain", and clients reach either);
- `lb.pair.standby`: the other host would take it over: keepalived runs there, is not in
  FAULT, its engine's unit is active and, with HAProxy, at least one node is UP behind 443,
  which is exactly what the rendered track script asks before the instance may hold the
  address (nginx tells no per-node state: its track script's verdict is keepalived's
  FAULT or not);
- `lb.host.<name>`: per host, each node's state on each of HAProxy's backends, as that
  host's health checks see it (a node one host cannot reach is a problem only it shows);
  with nginx, its unit's state and that no per-node state is available.
"""

from __future__ import annotations

from collections.abc import Sequence

from rke2ha.check import catalog
from rke2ha.check.pair_state import KEEPALIVED_UNIT, HostView
from rke2ha.check.result import CheckResult
from rke2ha.render.haproxy import INGRESS_BACKEND

VIP_ID = "lb.pair.vip"
STANDBY_ID = "lb.pair.standby"
# The backend of the 443 frontend (`render/haproxy.py` names each `rke2ha_<port>` at layer 4;
# at layer 7, 80 and 443 share `rke2ha_ingress`): among those the keepalived track script
# asks about (`render/keepalived.py`, track_backends).
TRACKED_BACKENDS = ("rke2ha_443", INGRESS_BACKEND)
BACKEND_PREFIX = "rke2ha_"
FIX_UNREACHED = (
    "log in to {host} over SSH as the spec's ssh: block says (`rke2ha preflight` shows why "
    "it cannot), then run check again"
)


def host_id(name: str) -> str:
    return f"lb.host.{name}"


def is_up(status: str) -> bool:
    """HAProxy's `UP` and `UP 1/2` (still up, one check failed) serve; nothing else does."""
    return status.startswith("UP")


def is_held_out(status: str) -> bool:
    """Taken out by an operator (`lb drain`, maintenance): not a fault of the node."""
    return status.startswith(("DRAIN", "MAINT"))


def _state(view: HostView) -> str:
    vrrp = f", {view.vrrp_state}" if view.vrrp_state else ""
    return f"keepalived {view.keepalived}{vrrp}, {view.engine_name} {view.engine}"


def _unreached(rule: catalog.CheckRule, check_id: str, views: Sequence[HostView]) -> CheckResult:
    lost = [v for v in views if not v.reached]
    detail = "; ".join(f"{v.name}: {v.error}" for v in lost)
    return rule.failed(
        check_id,
        f"cannot tell: could not read {', '.join(v.name for v in lost)} ({detail})",
        FIX_UNREACHED.format(host=" and ".join(v.name for v in lost)),
    )


def vip_holder(views: Sequence[HostView], address: str) -> CheckResult:
    rule = catalog.LB_PAIR_VIP
    if any(not v.reached for v in views):
        return _unreached(rule, VIP_ID, views)
    held = [v for v in views if v.holds_vip]
    states = "; ".join(f"{v.name}: {_state(v)}" for v in views)
    if len(held) == 1:
        others = [v.name for v in views if v is not held[0]]
        return rule.passed(
            VIP_ID,
            f"{held[0].name} holds {address} ({_state(held[0])}); standby {', '.join(others)}",
        )
    if not held:
        return rule.failed(
            VIP_ID,
            f"no host holds {address}: nothing answers on the load balancer address ({states})",
            f"start keepalived on both (`systemctl start {KEEPALIVED_UNIT}`) and make sure "
            f"the engine there reaches a node (the track script asks it); "
            f"`journalctl -u {KEEPALIVED_UNIT}` on each host says why it gave the address up",
        )
    return rule.failed(
        VIP_ID,
        f"{' and '.join(v.name for v in held)} all hold {address} (split brain: clients "
        f"reach either; {states})",
        "the hosts do not hear each other's VRRP adverts: allow IP protocol 112 (VRRP) "
        "between them, and give both the same virtual_router_id and auth_file (`rke2ha up`)",
    )


def standby_ready(views: Sequence[HostView]) -> CheckResult:
    rule = catalog.LB_PAIR_STANDBY
    if any(not v.reached for v in views):
        return _unreached(rule, STANDBY_ID, views)
    held = [v for v in views if v.holds_vip]
    if len(held) != 1:
        return rule.skipped(
            STANDBY_ID,
            "skipped: there is no single holder to stand by for (see lb.pair.vip)",
            "make exactly one host hold the virtual IP first",
        )
    standby = next(v for v in views if v is not held[0])
    problems: list[str] = []
    fixes: list[str] = []
    if standby.keepalived != "active":
        problems.append(f"keepalived is {standby.keepalived}")
        fixes.append(f"`systemctl start {KEEPALIVED_UNIT}` on {standby.name}")
    elif standby.vrrp_state == "FAULT":
        problems.append("keepalived is in FAULT (its track script fails)")
    if standby.engine != "active":
        problems.append(f"{standby.engine_name} is {standby.engine}")
        fixes.append(f"`systemctl start {standby.engine_unit}` on {standby.name}")
    tracked = next((standby.servers[b] for b in TRACKED_BACKENDS if b in standby.servers), {})
    up = sorted(s for s, st in tracked.items() if is_up(st))
    if standby.engine == "active" and standby.node_state and not up:
        why = standby.stat_error or "none is UP"
        problems.append(f"its HAProxy has no node UP behind 443 ({why})")
        fixes.append(
            f"make the nodes reachable from {standby.name} on the health-check port "
            f"(`rke2ha lb drain` leaves a node out until `lb enable`)"
        )
    if problems:
        return rule.failed(
            STANDBY_ID,
            f"{standby.name} would not take over from {held[0].name}: {'; '.join(problems)}",
            "; ".join(fixes) or f"see `journalctl -u {KEEPALIVED_UNIT}` on {standby.name}",
        )
    behind = f"behind 443: {', '.join(up)} UP" if standby.node_state else standby.stat_error
    return rule.passed(STANDBY_ID, f"{standby.name} would take over: {_state(standby)}; {behind}")


def host_nodes(view: HostView, nodes: Sequence[str]) -> CheckResult:
    """Each node on each `rke2ha_*` backend of this host's HAProxy."""
    rule = catalog.LB_HOST_NODES
    check_id = host_id(view.name)
    if not view.reached:
        return _unreached(rule, check_id, [view])
    if not view.node_state:
        said = f"{view.engine_name} {view.engine} on {view.name}; {view.stat_error}"
        if view.engine != "active":
            return rule.failed(
                check_id, said, f"start it (`systemctl start {view.engine_unit}` on {view.name})"
            )
        return rule.passed(check_id, said)
    backends = {b: s for b, s in sorted(view.servers.items()) if b.startswith(BACKEND_PREFIX)}
    if not backends:
        return rule.failed(
            check_id,
            f"HAProxy on {view.name} shows no backend (haproxy {view.engine}; "
            f"{view.stat_error or 'no rke2ha_ backend'})",
            f"start it (`systemctl start {view.engine_unit}` on {view.name}) or run `rke2ha up`",
        )
    per_node: list[str] = []
    bad: list[str] = []
    for node in nodes:
        states = []
        for backend, servers in backends.items():
            port = backend[len(BACKEND_PREFIX) :]
            status = servers.get(node, "absent")
            states.append(f"{port} {status}")
            if not (is_up(status) or is_held_out(status)):
                bad.append(f"{node} {port} {status}")
        per_node.append(f"{node}: {', '.join(states)}")
    detail = f"{view.name} sees " + "; ".join(per_node)
    if bad:
        return rule.failed(
            check_id,
            detail,
            f"HAProxy on {view.name} does not count {', '.join(bad)} as serving: check those "
            f"nodes (node.* checks) and the path from {view.name} to them",
        )
    return rule.passed(check_id, detail)


def pair_results(
    views: Sequence[HostView], address: str, nodes: Sequence[str]
) -> list[CheckResult]:
    """Every pair check, in a stable order."""
    return [
        vip_holder(views, address),
        standby_ready(views),
        *(host_nodes(view, nodes) for view in views),
    ]
