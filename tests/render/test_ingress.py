"""`rancher/ingress-helmchartconfig.yaml`: the HelmChartConfig that makes RKE2's ingress trust
the load balancer (layer 7: forwarded headers; send_proxy: the PROXY header)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tests.conftest import CliResult
from tests.render.helpers import SpecFactory, render

from rke2ha.lab.ingress_config import parse_ingress_config
from rke2ha.lab.ingress_model import IngressSettings
from rke2ha.render.ingress import INGRESS_CONFIG, ingress_files

Cli = Callable[..., CliResult]


def _document(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == "helm.cattle.io/v1"
    assert document["kind"] == "HelmChartConfig"
    assert document["metadata"]["namespace"] == "kube-system"
    return document, yaml.safe_load(document["spec"]["valuesContent"])


def test_layer7_ingress_nginx_trusts_forwarded_headers(specs: SpecFactory, tmp_path: Path) -> None:
    out = tmp_path / "out"
    render(specs.load(specs.tls()), out)
    path = out / INGRESS_CONFIG
    document, chart_values = _document(path)
    assert document["metadata"]["name"] == "rke2-ingress-nginx"
    # ConfigMap values are strings: "true", not a YAML boolean.
    assert chart_values == {"controller": {"config": {"use-forwarded-headers": "true"}}}
    text = path.read_text()
    assert "/var/lib/rancher/rke2/server/manifests/" in text
    # The lab's emulator reads the very same file the way the chart does.
    assert parse_ingress_config(text, str(path)) == IngressSettings(use_forwarded_headers=True)


def test_send_proxy_asks_ingress_nginx_for_the_proxy_protocol(
    specs: SpecFactory, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    render(specs.load({"load_balancer": {"send_proxy": True}}), out)
    _, chart_values = _document(out / INGRESS_CONFIG)
    assert chart_values == {"controller": {"config": {"use-proxy-protocol": "true"}}}


def test_traefik_trusts_the_load_balancer_addresses(specs: SpecFactory, tmp_path: Path) -> None:
    spec = specs.load(
        {
            **specs.tls(),
            "ingress": "traefik",
            "load_balancer": {
                "layer": 7,
                "address": "10.0.0.10",
                "extra_addresses": ["10.0.0.11"],
                "send_proxy": True,
                "tls": specs.tls()["load_balancer"]["tls"],
            },
        }
    )
    files, skipped = ingress_files(spec, "spec.yaml")
    assert skipped == {}
    path = tmp_path / "traefik.yaml"
    path.write_text(files[INGRESS_CONFIG])
    document, chart_values = _document(path)
    assert document["metadata"]["name"] == "rke2-traefik"
    trusted = ["10.0.0.10", "10.0.0.11"]
    web = chart_values["ports"]["web"]
    assert web["forwardedHeaders"]["trustedIPs"] == trusted
    assert web["proxyProtocol"]["trustedIPs"] == trusted
    assert chart_values["ports"]["websecure"]["proxyProtocol"]["trustedIPs"] == trusted


def test_traefik_without_a_known_address_is_skipped_with_the_reason(specs: SpecFactory) -> None:
    spec = specs.load({**specs.tls(), "ingress": "traefik"})
    object.__setattr__(spec.load_balancer, "address", None)
    files, skipped = ingress_files(spec, "spec.yaml")
    assert files == {}
    assert "load_balancer.address" in skipped[INGRESS_CONFIG]


def test_layer4_without_send_proxy_needs_no_ingress_config(
    specs: SpecFactory, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = render(specs.load({}), out)
    assert not (out / INGRESS_CONFIG).exists()
    assert INGRESS_CONFIG not in result.skipped


def test_render_names_the_file_and_where_rke2_reads_it(
    specs: SpecFactory, tmp_path: Path, run_cli: Cli
) -> None:
    spec_file = specs.write(specs.tls())
    out = tmp_path / "out"
    result = run_cli("render", "-f", str(spec_file), "-o", str(out))
    assert result.code == 0, result.err
    line = f"{out}/{INGRESS_CONFIG}  (install as /var/lib/rancher/rke2/server/manifests/"
    assert any(entry.startswith(line) for entry in result.out.splitlines()), result.out
