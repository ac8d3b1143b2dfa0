"""`rke2ha check` catches the layer 7 redirect loop of an ingress that does not trust the
load balancer's X-Forwarded-Proto, and passes once the nodes read the rendered ingress config.

A real layer 7 lab on 127.0.168.0/24: three `rke2ha lab node` processes (Rancher installed)
behind `rke2ha lb serve` (TLS ends there), checked with the real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import CliResult
from topology import LabProcesses, write_spec

from rke2ha.render.ingress import render_ingress_config
from rke2ha.specfile import load_spec

SUBNET = "127.0.168"
OFFSET = 22000
LB = f"{SUBNET}.10"
ADMIN_PORT = 18468
HOSTNAME = "rancher.loop.rke2ha.test"
NODES = ("node-1", "node-2", "node-3")


def _spec() -> dict[str, object]:
    return {
        "name": "loop",
        "hostname": HOSTNAME,
        "provider": "lab",
        "ingress": "nginx",
        "nodes": [{"name": name} for name in NODES],
        "load_balancer": {
            "layer": 7,
            "health": {"interval": "300ms", "timeout": "600ms", "rise": 1, "fall": 2},
            "admin": f"{LB}:{ADMIN_PORT}",
            # TLS ends at the load balancer: the lab's ingress certificate for the hostname
            # (made by the first node emulator) serves there too.
            "tls": {"cert": ".rke2ha/lab/pki/ingress.crt", "key": ".rke2ha/lab/pki/ingress.key"},
        },
        "dns": {"provider": "builtin", "zone": "loop.rke2ha.test", "ttl": 5},
        "lab": {"subnet": f"{SUBNET}.0/24", "port_offset": OFFSET},
    }


@pytest.fixture(scope="module")
def layer7_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcesses]:
    root = tmp_path_factory.mktemp("loop-lab")
    spec_file = write_spec(root / "loop.yaml", _spec())
    procs = LabProcesses(spec_file, OFFSET, root, lb_host=LB, admin_port=ADMIN_PORT)
    try:
        yield procs
    finally:
        procs.stop_all()


def _start(lab: LabProcesses, *extra: str) -> None:
    lab.stop_all()
    for name in NODES:
        lab.start_node(name, *extra)
    for name in NODES:
        lab.wait_node(name)
    lab.start_lb()


def _check(run_cli: Callable[..., CliResult], lab: LabProcesses) -> dict[str, dict[str, str]]:
    result = run_cli(
        "check", "-f", str(lab.spec_file), "--port-offset", str(OFFSET), "--json", "--timeout", "3"
    )
    document = json.loads(result.out)
    return {c["id"]: c for c in document["checks"]}


def test_layer7_without_the_ingress_config_is_a_redirect_loop_with_the_fix(
    layer7_lab: LabProcesses, run_cli: Callable[..., CliResult]
) -> None:
    _start(layer7_lab)  # RKE2's defaults: the ingress trusts no forwarded headers
    checks = _check(run_cli, layer7_lab)
    loop = checks["rancher.redirect"]
    assert loop["status"] == "fail", loop
    assert "redirect loop" in loop["detail"]
    assert "rancher/ingress-helmchartconfig.yaml" in loop["fix"]
    assert "/var/lib/rancher/rke2/server/manifests/" in loop["fix"]
    # Rancher serves /ping on plain http whatever it is told: rancher.ping cannot see this.
    assert checks["rancher.ping"]["status"] == "pass", checks["rancher.ping"]


def test_layer7_with_the_rendered_ingress_config_passes(
    layer7_lab: LabProcesses, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    config = tmp_path / "ingress-helmchartconfig.yaml"
    config.write_text(render_ingress_config(load_spec(layer7_lab.spec_file), "loop.yaml"))
    _start(layer7_lab, "--ingress-config", str(config))
    checks = _check(run_cli, layer7_lab)
    assert checks["rancher.redirect"]["status"] == "pass", checks["rancher.redirect"]
    assert checks["rancher.ping"]["status"] == "pass", checks["rancher.ping"]
