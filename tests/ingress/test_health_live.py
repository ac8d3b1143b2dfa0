"""Health checks against real ingress-nginx-style nodes (the issue's "Done when").

Three nodes of real nginx configured as ingress-nginx configures itself
(tests/support/ingress_nginx.py), the built-in load balancer or the rendered HAProxy in
front. Before *and after* Rancher's Ingress exists every node stays in rotation on 80 and
443, `/ping` through the load balancer's 443 answers `pong`, and a node whose nginx stops
leaves rotation. With the old plan (Rancher Host on the ingress check) every node left
rotation the moment Rancher was installed: the 308 to https failed the check.
"""

from __future__ import annotations

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
)
from tests.render.helpers import SpecFactory, make_cert
from tests.support.ingress_nginx import NGINX, IngressNginx

pytestmark = pytest.mark.root


@pytest.fixture
def specs(tmp_path: Path) -> SpecFactory:
    return SpecFactory(tmp_path)


@pytest.fixture
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[IngressNginx]]:
    """Three started nodes, Rancher not installed yet; `proxy_protocol` from the param."""
    if os.geteuid() != 0:
        pytest.skip("binds ports 80/443 on 127.0.133.x: needs root")
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    proxy = getattr(request, "param", False)
    tls = make_cert(tmp_path / "rancher-tls", HOSTNAME)
    started = []
    try:
        for index, address in enumerate(NODES):
            node = IngressNginx(
                tmp_path / f"node-{index + 1}", address, HOSTNAME, tls=tls, proxy_protocol=proxy
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


def scenario(engine: Engine, nodes: list[IngressNginx]) -> None:
    """Before Rancher, Rancher installed, a node stopped: the rotation at each step."""
    engine.wait_rotation(everyone())
    for node in nodes:
        node.install_rancher()
    # 10 check intervals with rise/fall 1: a failing check would have shown
    engine.hold_rotation(everyone(), 2.0)
    bodies = ping_through_lb(nodes[0].ca_file, 9)
    assert bodies == ["pong"] * 9
    nodes[1].stop()
    engine.wait_rotation(everyone(but="node-2"))
    assert ping_through_lb(nodes[0].ca_file, 6) == ["pong"] * 6
    nodes[1].start()
    engine.wait_rotation(everyone())


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
