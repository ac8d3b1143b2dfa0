"""Rule rke2.install: a pinned version, SSH, the air-gap folder, no keys rke2ha owns."""

from __future__ import annotations

import pytest

from rke2ha.spec import Spec

SSH = {"user": "root"}


def test_none_is_the_default_and_asks_for_nothing(base, findings, by_rule, make_spec):
    assert make_spec(base).rke2.install == "none"
    assert by_rule(findings(base), "rke2.install") == []


def test_install_without_a_version_is_an_error_with_a_fix(base, findings, by_rule):
    base["ssh"] = SSH
    base["rke2"].update(install="online")
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("error", "rke2.version")]
    assert "rke2.version" in found[0].fix


def test_a_version_that_is_no_release_is_an_error(base, findings, by_rule):
    base["ssh"] = SSH
    base["rke2"].update(install="online", version="latest")
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("error", "rke2.version")]


def test_airgap_needs_the_artifacts_folder(base, findings, by_rule):
    base["ssh"] = SSH
    base["rke2"].update(install="airgap", version="v1.33.6+rke2r1")
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("error", "rke2.airgap.artifacts")]


def test_install_needs_ssh(base, findings, by_rule):
    base["rke2"].update(install="online", version="v1.33.6+rke2r1")
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("error", "rke2.install")]


def test_complete_airgap_passes(base, findings, by_rule):
    base["ssh"] = SSH
    base["rke2"].update(
        install="airgap", version="v1.33.6+rke2r1", airgap={"artifacts": "./artifacts"}
    )
    assert by_rule(findings(base), "rke2.install") == []


@pytest.mark.parametrize(
    "key", ["token", "server", "tls-san", "node-name", "cni", "ingress-controller"]
)
def test_keys_rke2ha_sets_are_refused_in_config(base, findings, by_rule, key):
    base["rke2"]["config"] = {key: "x"}
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("error", f"rke2.config.{key}")]


def test_rancher_install_needs_rke2_install(base, findings, by_rule):
    base["rancher"] = {"install": True}
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("error", "rancher.install")]


def test_unknown_install_mode_is_refused(base, make_spec):
    base["rke2"]["install"] = "rpm"
    with pytest.raises(Exception, match="install"):
        make_spec(base)


def test_extra_config_reaches_every_server_config(base, make_spec):
    from rke2ha.render.rke2 import server_config

    base["rke2"]["config"] = {"etcd-snapshot-retention": 10, "kube-apiserver-arg": ["v=2"]}
    spec: Spec = make_spec(base)
    for index in range(3):
        config = server_config(spec, index, "tok")
        assert config["etcd-snapshot-retention"] == 10
        assert config["kube-apiserver-arg"] == ["v=2"]
        assert config["token"] == "tok"
