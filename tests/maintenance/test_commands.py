"""`rke2ha.maintenance`: the runtime-API commands for a node, computed from the rendered
haproxy.cfg of a spec (layer 4 and layer 7), and the errors before anything is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rke2ha.errors import InvalidError, UsageError
from rke2ha.maintenance import (
    check_engine,
    check_node,
    haproxy_backends,
    haproxy_commands,
    parse_servers_state,
    stats_socket,
)
from rke2ha.render.common import Layout
from rke2ha.render.haproxy import render_haproxy
from rke2ha.specfile import load_spec

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
    with pytest.raises(InvalidError, match="nginx has no runtime API"):
        check_engine("nginx")
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
        ("nginx", "node-1", 1, "no runtime API"),
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
