"""The steps for one node, from its facts (pure)."""

from __future__ import annotations

import subprocess

import pytest

from rke2ha.errors import InvalidError
from rke2ha.rke2node.decide import (
    CONFIG,
    MANIFESTS,
    NodeFacts,
    NodeFiles,
    facts_fingerprint,
    facts_script,
    files_fingerprint,
    foreign_refusal,
    parse_facts,
    sha256,
    token_line_sha,
    up_steps,
    write_step,
)

FILES = NodeFiles("token: t\n", "kind: AuthenticationConfiguration\n", {"ing.yaml": "x: 1\n"})
V = "v1.33.6+rke2r1"


def _facts(**kw: object) -> NodeFacts:
    values: dict[str, object] = dict(
        version=None,
        config_sha=None,
        authn_sha=None,
        manifest_shas={},
        enabled=False,
        active="inactive",
        etcd_data=False,
    )
    values.update(kw)
    return NodeFacts(**values)  # type: ignore[arg-type]


def _matching(**kw: object) -> NodeFacts:
    base: dict[str, object] = dict(
        version=V,
        config_sha=sha256(FILES.config),
        authn_sha=sha256(FILES.authn or ""),
        manifest_shas={"ing.yaml": sha256("x: 1\n")},
        enabled=True,
        active="active",
    )
    base.update(kw)
    return _facts(**base)


def test_a_fresh_node_gets_upload_install_files_enable_and_a_non_blocking_start():
    steps = up_steps("node-1", _facts(), FILES, V, upload=True)
    kinds = [s.kind for s in steps]
    assert kinds == ["upload", "verify", "install", "write", "write", "write", "enable", "start"]
    assert steps[-1].command == "systemctl start --no-block rke2-server"
    # The ingress config is in the manifests folder before the first start.
    assert steps[5].command.endswith(f"{MANIFESTS}/ing.yaml")


def test_online_has_no_upload():
    steps = up_steps("node-1", _facts(), FILES, V, upload=False)
    assert [s.kind for s in steps][:2] == ["install", "write"]


def test_a_node_with_the_version_and_config_running_is_left_alone():
    assert up_steps("node-1", _matching(), FILES, V, upload=True) == []


def test_another_version_is_refused_naming_node_and_fix():
    with pytest.raises(InvalidError, match=r"node-2 runs RKE2 v1.32.1.*not supported yet"):
        up_steps("node-2", _matching(version="v1.32.1+rke2r1"), FILES, V, upload=True)


def test_a_changed_config_on_a_running_node_is_written_then_restarted():
    steps = up_steps("node-1", _matching(config_sha="0" * 64), FILES, V, upload=True)
    assert [s.kind for s in steps] == ["write", "restart"]
    assert steps[0].input == FILES.config
    assert "--no-block" in steps[1].command


def test_a_stopped_node_is_only_started():
    steps = up_steps("node-1", _matching(active="failed"), FILES, V, upload=True)
    assert [s.kind for s in steps] == ["start"]


def test_write_is_private_before_it_has_content_and_atomic():
    step = write_step(CONFIG, "token: SECRET", "0600")
    assert step.command.startswith("umask 077 && mkdir -p /etc/rancher/rke2")
    assert "chmod 0600" in step.command and "mv -f" in step.command
    assert "SECRET" not in step.command  # content goes on stdin, never on a command line


def test_facts_parse_and_fingerprint_like_the_rendered_files():
    text = "\n".join(
        [
            f"version={V}",
            f"config={sha256(FILES.config)}",
            f"authn={sha256(FILES.authn or '')}",
            f"manifest:ing.yaml={sha256('x: 1')}",
            "manifest:other.yaml=",
            "enabled=enabled",
            "active=activating",
            "etcd=yes",
        ]
    )
    facts = parse_facts(text)
    assert facts.version == V and facts.enabled and facts.running and facts.etcd_data
    assert facts.manifest_shas == {"ing.yaml": sha256("x: 1")}
    assert facts_fingerprint(facts) == files_fingerprint(FILES)
    assert facts_fingerprint(parse_facts("version=\nenabled=disabled\n")) == "none"


def test_a_new_token_for_a_node_with_etcd_data_is_refused_before_anything_is_written():
    """RKE2 would refuse to restart with it (rancher/rke2#6250): nothing is written."""
    old = token_line_sha("token: the-first-one\n")
    facts = _matching(config_sha="0" * 64, etcd_data=True, token_sha=old)
    with pytest.raises(InvalidError) as refused:
        up_steps("node-1", facts, FILES, V, upload=True)
    message = str(refused.value)
    assert "node-1 holds etcd data made with another cluster token" in message
    assert "fix: put the token node-1 was installed with back into rke2.token_file" in message
    assert "the-first-one" not in message and "token: t" not in message


def test_the_same_token_or_no_etcd_data_yet_writes_the_config():
    same = token_line_sha(FILES.config)
    other = token_line_sha("token: another\n")
    # The token is the same, another key changed: written and restarted.
    steps = up_steps(
        "n", _matching(config_sha="0" * 64, etcd_data=True, token_sha=same), FILES, V, upload=True
    )
    assert [s.kind for s in steps] == ["write", "restart"]
    # No etcd data yet (a join that never finished): the token may still be corrected.
    steps = up_steps(
        "n", _matching(config_sha="0" * 64, etcd_data=False, token_sha=other), FILES, V, upload=True
    )
    assert [s.kind for s in steps] == ["write", "restart"]


def test_the_facts_carry_a_digest_of_the_token_line_as_the_node_computes_it(tmp_path):
    """The facts script's shell digest equals `token_line_sha` (trailing spaces ignored)."""
    config = tmp_path / "config.yaml"
    config.write_text("cni: canal\ntoken: K10abc::server:secret   \nnode-name: n\n")
    script = facts_script([]).replace(CONFIG, str(config))
    line = next(x for x in script.splitlines() if x.startswith("if t=$(grep"))
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    assert parse_facts(out).token_sha == token_line_sha(config.read_text())
    assert "secret" not in out
    # A node without config.yaml: no digest, and the script still succeeds.
    config.unlink()
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    assert out == "" and parse_facts(out).token_sha is None


def test_rke2_installed_by_someone_else_is_refused_only_when_its_config_differs():
    ours = _facts(version=V, config_sha=sha256(FILES.config), authn_sha=sha256(FILES.authn or ""))
    theirs = _facts(version=V, config_sha=sha256("token: other\n"))
    assert foreign_refusal("n1", ours, FILES, recorded=False) is None
    assert foreign_refusal("n1", _facts(), FILES, recorded=False) is None
    assert foreign_refusal("n1", theirs, FILES, recorded=True) is None
    said = foreign_refusal("n1", theirs, FILES, recorded=False)
    assert said is not None and "\n" not in said
    assert said.startswith("n1 runs RKE2 " + V) and "rke2.install: none" in said
