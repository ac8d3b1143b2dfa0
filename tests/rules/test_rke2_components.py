"""Rule `rke2.components`: RKE2 keeps the spec's ingress; `cni: none` is a warning."""

from __future__ import annotations

import pytest

from .conftest import of


@pytest.mark.parametrize(
    ("ingress", "disable"),
    [
        ("nginx", ["rke2-ingress-nginx"]),
        ("nginx", "rke2-metrics-server,rke2-ingress-nginx"),
        ("traefik", ["rke2-coredns", "rke2-traefik"]),
    ],
)
def test_disabling_the_spec_ingress_is_an_error(base, findings, ingress, disable) -> None:
    base["ingress"] = ingress
    base["rke2"]["config"] = {"disable": disable}
    errors = of(findings(base), "rke2.components", "error")
    assert [f.path for f in errors] == ["rke2.config.disable"]
    assert f"(ingress: {ingress})" in errors[0].message


def test_disabling_the_other_ingress_passes(base, findings) -> None:
    base["rke2"]["config"] = {"disable": ["rke2-traefik", "rke2-metrics-server"]}
    assert of(findings(base), "rke2.components") == []


def test_cni_none_is_a_warning(base, findings) -> None:
    base["rke2"]["cni"] = "none"
    found = of(findings(base), "rke2.components")
    assert [(f.severity, f.path) for f in found] == [("warning", "rke2.cni")]
    assert "NotReady" in found[0].message
