"""`rke2ha.maintenance`: the runtime-API commands for a node, computed from the rendered
haproxy.cfg of a spec (layer 4 and layer 7), and the errors before anything is sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rke2ha.errors import InvalidError, UsageError
from rke2ha.lbhost.decide import Step
from rke2ha.maintenance import (
    check_engine,
    check_node,
    drain_commands,
    drained_after,
    haproxy_backends,
    haproxy_commands,
    keep_drained_steps,
    nginx_upstreams,
    parse_servers_state,
    stats_socket,
)
from rke2ha.render.common import Layout
from rke2ha.render.haproxy import render_haproxy
from rke2ha.specfile import load_spec
from rke2ha.state import StateStore

SPEC = {
    "name": "maint",
    "hostname": "rancher.example.test",
    "provider": "existing",
    "nodes": [{"name": f"node-{i}", "address": f"127.0.218.1{i}"} for i in (1, 2, 3)],
    "load_balancer": {"engine": "haproxy", "address": "127.0.218.10"},
    "dns": {"zone": "example.test"},
}


def rendered(tmp_path: Path, layer: int = 4) -> str:
    spec = dict(SPEC, load_balancer={**SPEC["load_balancer"], "layer": layer})  # type: ignore[dict-item]
    if layer == 7:
        spec["load_balancer"]["tls"] = {"cert": "c.pem", "key": "k.pem"}  # type: ignore[index]
    path = tmp_path / "rke2ha.yaml"
    path.write_text(yaml.safe_dump(spec))
    return render_haproxy(load_spec(path), "test", Layout(haproxy_socket="/run/x/admin.sock"))


def test_layer4_drain_names_every_port_backend_and_the_socket(tmp_path: Path) -> None:
    text = rendered(tmp_path)
    assert stats_socket(text) == "/run/x/admin.sock"
    assert "stats socket /run/x/admin.sock mode 600 level admin" in text
    assert haproxy_commands(text, "node-2", "drain") == [
        f"set server rke2ha_{port}/node-2 state drain" for port in (80, 443, 6443, 9345)
    ]
    assert (
        haproxy_commands(text, "node-2", "enable")[0] == "set server rke2ha_80/node-2 state ready"
    )
    # a name that is only a prefix of a server name matches nothing
    assert haproxy_backends(text, "node-") == []


def test_backends_come_from_the_config_not_a_fixed_list() -> None:
    text = (
        "frontend f\n    bind :1\n    default_backend b1\n"
        "backend b1\n    server node-1 10.0.0.1:1 check\n    server node-2 10.0.0.2:1 check\n"
        "listen l\n    bind :2\n    server node-2 10.0.0.2:2\n"
        "backend b3\n    server node-1 10.0.0.1:3\n"
    )
    assert haproxy_backends(text, "node-2") == ["b1", "l"]
    assert haproxy_commands(text, "node-1", "drain") == [
        "set server b1/node-1 state drain",
        "set server b3/node-1 state drain",
    ]
    assert stats_socket(text) is None


def test_node_and_engine_errors() -> None:
    with pytest.raises(UsageError, match=r"node-9.*nodes: node-1, node-2"):
        check_node("node-9", ["node-1", "node-2"])
    check_node("node-1", ["node-1"])
    with pytest.raises(InvalidError, match="deregister"):
        check_engine("aws-nlb")
    check_engine("nginx")  # by a reload of its config with the node marked down
    check_engine("haproxy")
    check_engine("builtin")


def test_show_servers_state_parsing() -> None:
    # The shape of HAProxy 2.6's answer (version line, header, one row per server).
    text = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
        "srv_uweight srv_iweight srv_time_since_last_change srv_check_status "
        "srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id "
        "srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
        "srv_check_addr srv_agent_addr srv_agent_port\n"
        "3 rke2ha_443 1 node-1 127.0.0.11 2 0 1 1 4 15 3 4 6 0 0 0 - 443 - 0 0 - - 0\n"
        "3 rke2ha_443 2 node-2 127.0.0.12 2 8 1 1 4 15 3 4 6 0 0 0 - 443 - 0 0 - - 0\n"
    )
    rows = parse_servers_state(text)
    assert [(r.server, r.drained) for r in rows] == [("node-1", False), ("node-2", True)]
    assert rows[1].operational == 2 and not rows[1].in_maintenance


def test_cli_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "rke2ha.yaml"
    spec = dict(SPEC)
    for engine, node, code, says in (
        ("haproxy", "node-9", 2, "nodes: node-1, node-2, node-3"),
        ("nginx", "node-1", 1, "nginx is not running under rke2ha for this spec (no state"),
        ("builtin", "node-1", 1, "built-in load balancer is not running"),
        ("haproxy", "node-1", 1, "HAProxy is not running under rke2ha"),
    ):
        spec["load_balancer"] = {
            "engine": engine,
            "address": "127.0.218.10",
            "admin": "127.0.218.10:1",  # nothing listens on port 1
        }
        path.write_text(yaml.safe_dump(spec))
        done = subprocess.run(
            [sys.executable, "-m", "rke2ha", "lb", "drain", node, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stdout) == (code, ""), done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr


def test_a_node_in_maintenance_is_never_picked_at_layer_4_or_7() -> None:
    from rke2ha.lb.config import BackendConfig
    from rke2ha.lb.l7.pool_adapter import PoolNodes
    from rke2ha.lb.pool import Attempt, Pool

    configs = [BackendConfig(f"127.0.218.1{i}", 443, f"node-{i}") for i in (1, 2, 3)]
    pool = Pool(configs, rise=1, fall=1)
    nodes = PoolNodes(pool)
    pool.backends[1].maintenance_since = 1.0
    picked = {pool.pick(Attempt(0)).config.name for _ in range(30)}  # type: ignore[union-attr]
    assert picked == {"node-1", "node-3"}
    seen = {nodes.pick().host for _ in range(30)}  # type: ignore[union-attr]
    assert seen == {"127.0.218.11", "127.0.218.13"}
    assert {n.host for n in nodes.candidates(set())} == seen
    pool.backends[1].maintenance_since = None
    assert {nodes.pick().host for _ in range(30)} == seen | {"127.0.218.12"}  # type: ignore[union-attr]


def test_admin_route_answers_unknown_node_with_the_names() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from rke2ha.lb.admin import _loopback, build_app

    calls: list[tuple[str, bool]] = []

    def control(node: str, drain: bool) -> list[str]:
        if node != "node-1":
            raise KeyError(node)
        calls.append((node, drain))
        return ["port-443"]

    snapshot = {"frontends": [{"backends": [{"name": "node-1"}, {"name": "node-2"}]}]}

    async def scenario() -> None:
        async with TestClient(TestServer(build_app(lambda: snapshot, control))) as client:
            ok = await client.post("/nodes/node-1/drain")
            assert ok.status == 200 and (await ok.json())["frontends"] == ["port-443"]
            missing = await client.post("/nodes/node-9/enable")
            assert missing.status == 404
            assert (await missing.json())["nodes"] == ["node-1", "node-2"]
            assert (await client.post("/nodes/node-1/reboot")).status == 404
            assert (await client.get("/nodes/node-1/drain")).status == 405

    asyncio.run(scenario())
    assert calls == [("node-1", True)]
    assert _loopback("127.0.0.1") and _loopback("::1")
    assert not _loopback("192.0.2.1") and not _loopback(None) and not _loopback("x")


def test_drained_set_and_its_place_in_the_state_file(tmp_path: Path) -> None:
    assert drained_after([], "node-2", "drain") == ["node-2"]
    assert drained_after(["node-3", "node-2"], "node-2", "drain") == ["node-2", "node-3"]
    assert drained_after(["node-2"], "node-2", "enable") == []
    assert drained_after([], "node-2", "enable") == []
    store = StateStore(tmp_path, "maint")
    state = store.load_or_new("existing")
    store.save(state)
    assert "drained" not in json.loads(store.path.read_text())  # nothing drained: no key
    state.drained = ["node-2"]
    store.save(state)
    loaded = store.load()
    assert loaded is not None and loaded.drained == ["node-2"]


def test_haproxy_reloads_and_starts_drain_the_recorded_nodes_again(tmp_path: Path) -> None:
    text = rendered(tmp_path)
    steps = [
        Step("upload", "upload", "cat > x", input="cfg"),
        Step("reload", "reload haproxy.service", "systemctl reload haproxy.service"),
        Step("verify", "active", "systemctl is-active haproxy.service"),
    ]
    assert keep_drained_steps("haproxy", steps, text, []) == steps
    assert keep_drained_steps("nginx", steps, text, ["node-2"]) == steps
    kept = keep_drained_steps("haproxy", steps, text, ["node-2"])
    assert [s.kind for s in kept] == ["upload", "reload", "verify"]
    assert kept[0] == steps[0] and kept[2] == steps[2]
    reload = kept[1]
    assert reload.what == "reload haproxy.service and drain node-2 again (runtime API)"
    # the worker's pid before, the reload itself, then the drain on the new worker
    before, rest = reload.command.split("systemctl reload haproxy.service && ", 1)
    assert before.startswith("OLD=$(python3 -c ") and " pid -)" in before
    assert ' apply "$OLD" ' in rest
    for port in (80, 443, 6443, 9345):
        assert f"'set server rke2ha_{port}/node-2 state drain'" in rest
    assert "/run/x/admin.sock" in rest
    first = drain_commands(text, ["node-1", "node-3"])[0]
    assert first == "set server rke2ha_80/node-1 state drain"


def test_nginx_reload_with_drained_nodes_waits_for_the_old_workers(tmp_path: Path) -> None:
    steps = [
        Step("replace", "move it", "mv a b"),
        Step("reload", "reload nginx.service", "systemctl reload nginx.service"),
    ]
    assert keep_drained_steps("nginx", steps, "", [], "nginx.service") == steps
    kept = keep_drained_steps("nginx", steps, "", ["node-2"], "nginx.service")
    assert kept[0] == steps[0]
    assert kept[1].what == "reload nginx.service (until its old workers stop accepting)"
    command = kept[1].command
    assert command.startswith(
        "OLDW=$(cat /proc/$(systemctl show -p MainPID --value nginx.service)/task/*/children"
    )
    assert "; systemctl reload nginx.service && python3 -c " in command
    assert command.endswith(" $OLDW")
    # the wait itself, run here against real processes: a sleeping child that is not a
    # shutting-down nginx worker keeps it waiting; once it is gone the wait ends
    script = command.split("python3 -c ", 1)[1].rsplit(" $OLDW", 1)[0]
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        done = subprocess.run(
            ["sh", "-c", f"timeout 1 python3 -c {script} {sleeper.pid}"], timeout=30
        )
        assert done.returncode == 124  # still waiting when `timeout` stopped it
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = subprocess.run(["sh", "-c", f"python3 -c {script} {sleeper.pid}"], timeout=30)
    assert gone.returncode == 0


def test_nginx_upstream_names() -> None:
    text = "stream {\n    upstream rke2ha_6443 {\n    }\n    upstream rke2ha_9345 {\n}\n}"
    assert nginx_upstreams(text) == ["rke2ha_6443", "rke2ha_9345"]


def test_a_drain_is_recorded_even_when_haproxy_does_not_take_it_and_an_enable_only_when_it_does(
    tmp_path: Path,
) -> None:
    # With two hosts, a drain one host took and the next refused must stay recorded: `up`
    # reloads the first host and would otherwise put the node back mid-maintenance.
    from rke2ha.maintenance_run import apply
    from rke2ha.providers.existing.engines import EnginePaths

    text = rendered(tmp_path)  # its stats socket, /run/x/admin.sock, answers nobody
    spec = load_spec(tmp_path / "rke2ha.yaml")
    running = EnginePaths.under(spec.state_dir, "haproxy").running_config
    running.parent.mkdir(parents=True, exist_ok=True)
    running.write_text(text)
    store = StateStore(spec.state_dir, spec.name)
    store.save(store.load_or_new("existing"))
    with pytest.raises(InvalidError):
        apply(spec, "node-2", "drain")
    loaded = store.load()
    assert loaded is not None and loaded.drained == ["node-2"]
    with pytest.raises(InvalidError):
        apply(spec, "node-2", "enable")
    loaded = store.load()
    assert loaded is not None and loaded.drained == ["node-2"]  # not taken: still out
