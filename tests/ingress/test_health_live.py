"""Health checks against real ingress-nginx-style nodes (the issue's "Done when").

Three nodes of real nginx configured as ingress-nginx configures itself
(tests/support/ingress_nginx.py), the built-in load balancer or the rendered HAProxy in
front. Before *and after* Rancher's Ingress exists every node stays in rotation on 80 and
443, `/ping` through the load balancer's 443 answers `pong`, and a node whose nginx stops
leaves rotation. With the old plan (Rancher Host on the ingress check) every node left
rotation the moment Rancher was installed: the 308 to https failed the check.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ingress.harness import (
    HOSTNAME,
    NODES,
    Engine,
    everyone,
    ping_through_lb,
    spec_overrides,
)
from tests.render.helpers import SpecFactory, make_cert
from tests.support.ingress_nginx import NGINX, IngressNginx

from rke2ha.check import checks
from rke2ha.check.target import CheckOptions, build_target

pytestmark = pytest.mark.root


@pytest.fixture
def specs(tmp_path: Path) -> SpecFactory:
    return SpecFactory(tmp_path)


@pytest.fixture
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[IngressNginx]]:
    """Three started nodes, Rancher not installed yet; IngressNginx options from the param
    (True: proxy_protocol listeners)."""
    if os.geteuid() != 0:
        pytest.skip("binds ports 80/443 on 127.0.133.x: needs root")
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    param = getattr(request, "param", False)
    options = param if isinstance(param, dict) else {"proxy_protocol": bool(param)}
    tls = make_cert(tmp_path / "rancher-tls", HOSTNAME)
    started = []
    try:
        for index, address in enumerate(NODES):
            node = IngressNginx(
                tmp_path / f"node-{index + 1}", address, HOSTNAME, tls=tls, **options
            )
            node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    running: list[Engine] = []
    yield running
    for engine in running:
        engine.stop()


def scenario(engine: Engine, nodes: list[IngressNginx], ports: tuple[int, ...] = (80, 443)) -> None:
    """Before Rancher, Rancher installed, a node stopped: the rotation at each step."""
    engine.wait_rotation(everyone(ports=ports))
    for node in nodes:
        node.install_rancher()
    # 10 check intervals with rise/fall 1: a failing check would have shown
    engine.hold_rotation(everyone(ports=ports), 2.0)
    bodies = ping_through_lb(nodes[0].ca_file, 9)
    assert bodies == ["pong"] * 9
    nodes[1].stop()
    engine.wait_rotation(everyone(but="node-2", ports=ports))
    assert ping_through_lb(nodes[0].ca_file, 6) == ["pong"] * 6
    nodes[1].start()
    engine.wait_rotation(everyone(ports=ports))


@pytest.mark.parametrize("kind", ["builtin", "haproxy"])
def test_nodes_stay_in_rotation_once_rancher_is_installed(
    kind: str,
    nodes: list[IngressNginx],
    specs: SpecFactory,
    tmp_path: Path,
    engines: list[Engine],
) -> None:
    engine = Engine(kind, specs, tmp_path)
    engines.append(engine)
    scenario(engine, nodes)


@pytest.mark.parametrize("nodes", [True], indirect=True, ids=["proxy_protocol"])
@pytest.mark.parametrize("kind", ["builtin", "haproxy"])
def test_send_proxy_checks_speak_proxy_protocol_like_the_traffic(
    kind: str,
    nodes: list[IngressNginx],
    specs: SpecFactory,
    tmp_path: Path,
    engines: list[Engine],
) -> None:
    """Nodes whose nginx listens with `proxy_protocol` (ingress-nginx use-proxy-protocol)."""
    engine = Engine(kind, specs, tmp_path, send_proxy=True)
    engines.append(engine)
    scenario(engine, nodes)


@pytest.mark.parametrize("nodes", [True], indirect=True, ids=["proxy_protocol"])
def test_check_speaks_proxy_protocol_to_nodes_that_expect_it(
    nodes: list[IngressNginx], specs: SpecFactory
) -> None:
    """`check`'s node.<name>.80/443 connect to the nodes directly: with send_proxy they send
    the header first (and Rancher installed: 80 from the catch-all, 443 /ping -> pong)."""
    for node in nodes:
        node.install_rancher()
    results = {}
    for send_proxy in (True, False):
        spec = specs.load(spec_overrides(send_proxy=send_proxy))
        target = build_target(spec, CheckOptions(timeout=3))
        results[send_proxy] = [
            asyncio.run(checks.node_port(target, node, port)).status
            for node in target.nodes
            for port in (80, 443)
        ]
    assert results[True] == ["pass"] * 6
    assert "pass" not in results[False]  # the ingress refuses a connection without it


LAYER7_NODES = {"rancher_tls": "external", "use_forwarded_headers": True}


@pytest.mark.parametrize("nodes", [LAYER7_NODES], indirect=True, ids=["tls_external"])
@pytest.mark.parametrize("kind", ["builtin", "haproxy"])
def test_layer7_nodes_stay_in_rotation_once_rancher_is_installed(
    kind: str,
    nodes: list[IngressNginx],
    specs: SpecFactory,
    tmp_path: Path,
    engines: list[Engine],
) -> None:
    """TLS ends at the load balancer (Rancher tls=external): HTTP to the nodes' port 80."""
    cert = str(nodes[0].ca_file)
    key = str(nodes[0].key_file)
    engine = Engine(kind, specs, tmp_path, layer=7, tls={"cert": cert, "key": key})
    engines.append(engine)
    scenario(engine, nodes, ports=(443,))


@pytest.mark.parametrize(
    ("nodes", "loops"),
    [
        ({"rancher_tls": "external", "use_forwarded_headers": False}, True),
        ({"rancher_tls": "external", "use_forwarded_headers": True}, False),
    ],
    indirect=["nodes"],
    ids=["ingress-without-forwarded-headers", "ingress-config-installed"],
)
def test_check_catches_the_layer7_redirect_loop_of_real_nginx_and_names_the_fix(
    nodes: list[IngressNginx],
    loops: bool,
    specs: SpecFactory,
    tmp_path: Path,
    engines: list[Engine],
) -> None:
    """Layer 7 in front of a real ingress that does not trust X-Forwarded-Proto: it tells
    Rancher "http", Rancher answers 302 to the same https URL, and a browser loops.
    `rancher.redirect` must say so and name the HelmChartConfig; with the config's effect
    (use-forwarded-headers) the same check passes."""
    cert, key = str(nodes[0].ca_file), str(nodes[0].key_file)
    tls = {"cert": cert, "key": key}
    engine = Engine("builtin", specs, tmp_path, layer=7, tls=tls)
    engines.append(engine)
    engine.wait_rotation(everyone(ports=(443,)))
    for node in nodes:
        node.install_rancher()
    target = build_target(specs.load(spec_overrides(layer=7, tls=tls)), CheckOptions(timeout=3))
    result = asyncio.run(checks.rancher_redirect(target))
    if loops:
        assert result.status == "fail", result
        assert "rancher/ingress-helmchartconfig.yaml" in result.fix, result
    else:
        assert result.status == "pass", result
