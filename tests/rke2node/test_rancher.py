"""Rancher as HelmChart manifests on the first server, then /ping -> pong through the load
balancer (a real TLS server on loopback port 443 standing in for the ingress behind it)."""

from __future__ import annotations

import base64
import ssl
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.rke2node.fakenode import FakeConnection, Node, World
from tests.support.certs import write_self_signed

from rke2ha.errors import InvalidError
from rke2ha.plan import diff
from rke2ha.providers.base import Facts, SilentReporter
from rke2ha.providers.existing.rancher_release import RancherRelease
from rke2ha.render.rancher_helmchart import helmchart_manifests
from rke2ha.specfile import spec_from_source
from rke2ha.ssh import connection
from rke2ha.ssh.target import targets
from rke2ha.state import StateStore
from rke2ha.yamlsource import YamlSource

LB = "127.0.118.10"


def _spec(tmp_path: Path, **rancher: Any) -> Any:
    data = {
        "name": "prod",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [{"name": f"node-{i}", "address": f"198.18.0.1{i}"} for i in (1, 2, 3)],
        "load_balancer": {"address": LB},
        "dns": {"provider": "manual", "zone": "example.com"},
        "ssh": {"user": "root"},
        "rke2": {"install": "online", "version": "v1.33.6+rke2r1"},
        "rancher": {"install": True, **rancher},
    }
    return spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)


def _values(text: str) -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_load(text)["spec"]["valuesContent"])


def test_cert_manager_with_crds_then_rancher_with_the_spec_values(tmp_path):
    spec = _spec(tmp_path, tls_source="rancher", replicas=2)
    files = helmchart_manifests(spec, "s3cret")
    assert list(files) == ["rke2ha-cert-manager.yaml", "rke2ha-rancher.yaml"]
    cert_manager = yaml.safe_load(files["rke2ha-cert-manager.yaml"])
    assert cert_manager["apiVersion"] == "helm.cattle.io/v1"
    assert cert_manager["spec"]["repo"] == "https://charts.jetstack.io"
    assert _values(files["rke2ha-cert-manager.yaml"]) == {"crds": {"enabled": True}}
    rancher = yaml.safe_load(files["rke2ha-rancher.yaml"])
    assert rancher["spec"]["targetNamespace"] == "cattle-system"
    assert rancher["spec"]["createNamespace"] is True
    values = _values(files["rke2ha-rancher.yaml"])
    assert values["hostname"] == "rancher.example.com" and values["replicas"] == 2
    assert values["bootstrapPassword"] == "s3cret"
    assert values["ingress"]["ingressClassName"] == "nginx"


def test_external_tls_needs_no_cert_manager_and_airgap_carries_the_chart(tmp_path):
    spec = _spec(tmp_path, tls_source="external")
    files = helmchart_manifests(spec, "pw", rancher_chart=b"\x1f\x8bchart")
    assert list(files) == ["rke2ha-rancher.yaml"]
    chart = yaml.safe_load(files["rke2ha-rancher.yaml"])["spec"]
    assert base64.b64decode(chart["chartContent"]) == b"\x1f\x8bchart"
    assert "repo" not in chart
    assert _values(files["rke2ha-rancher.yaml"])["tls"] == "external"


@pytest.fixture
def lb(tmp_path: Path) -> Iterator[dict[str, str]]:
    answer = {"body": "starting"}
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "rancher.example.com")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            ok = self.path == "/ping" and self.headers["Host"] == "rancher.example.com"
            data = (answer["body"] if ok else "404").encode()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((LB, 443), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield answer
    server.shutdown()
    server.server_close()


def test_manifests_on_the_first_server_private_then_pong_then_no_change(tmp_path, lb, monkeypatch):
    spec = _spec(tmp_path, tls_source="rancher")
    world = World({n.name: Node(n.name) for n in spec.nodes})

    async def connect(target: Any, accept_new_host_keys: bool = False) -> FakeConnection:
        return FakeConnection(world, target)

    monkeypatch.setattr(connection, "connect", connect)
    store = StateStore(spec.state_dir, spec.name)
    first = targets(spec)[0]

    def release(timeout: float = 2.0) -> RancherRelease:
        return RancherRelease(spec, store.load_or_new("existing"), store, first,
                              timeout=timeout, poll=0.05)  # fmt: skip

    lb["body"] = "pong"
    made = release()
    facts = Facts({})
    made.describe(facts)
    plan = diff([made.desired()], facts.observed)
    assert [c.symbol for c in plan.changes] == ["+"]
    made.apply(plan.changes[0], SilentReporter())
    node = world.nodes["node-1"]
    manifests = "/var/lib/rancher/rke2/server/manifests/"
    assert sorted(p for p in node.files if p.startswith(manifests)) == [
        manifests + "rke2ha-cert-manager.yaml",
        manifests + "rke2ha-rancher.yaml",
    ]
    assert world.nodes["node-2"].files == {}
    password = spec.bootstrap_password_file.read_text().strip()
    assert password in node.files[manifests + "rke2ha-rancher.yaml"]
    assert stat.S_IMODE(spec.bootstrap_password_file.stat().st_mode) == 0o600
    again = release()
    facts = Facts({})
    again.describe(facts)
    assert diff([again.desired()], facts.observed).changes == []
    # No password in what the plan shows.
    assert password not in str(facts.observed)


def test_no_pong_in_time_names_the_url_and_where_to_look(tmp_path, lb, monkeypatch):
    spec = _spec(tmp_path, tls_source="external")
    world = World({n.name: Node(n.name) for n in spec.nodes})

    async def connect(target: Any, accept_new_host_keys: bool = False) -> FakeConnection:
        return FakeConnection(world, target)

    monkeypatch.setattr(connection, "connect", connect)
    store = StateStore(spec.state_dir, spec.name)
    made = RancherRelease(spec, store.load_or_new("existing"), store, targets(spec)[0],
                          timeout=0.3, poll=0.05)  # fmt: skip
    with pytest.raises(InvalidError) as err:
        made.apply(diff([made.desired()], {}).changes[0], SilentReporter())
    assert "https://rancher.example.com/ping" in str(err.value)
    assert "starting" in str(err.value)
    assert "kubectl -n kube-system get helmcharts" in str(err.value)
