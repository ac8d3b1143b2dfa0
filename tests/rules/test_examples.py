"""Every example validates; every examples/invalid file fails with exactly its rule id."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rke2ha.rules import RULE_IDS
from rke2ha.rules.validation import SCHEMA_ID, validate_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALID = sorted(EXAMPLES.glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))

# Rules that can report an error; each needs a file in examples/invalid.
ERROR_RULES = {
    "nodes.count",
    "nodes.unique",
    "nodes.region",
    "hostname.fqdn",
    "hostname.in_zone",
    "dns.cname_apex",
    "dns.record_target",
    "lb.ports",
    "lb.layer7_tls",
    "lb.engine_layer",
    "lb.on_node",
    "lb.health",
    "lb.pair",
    "lb.hosts",
    "lb.send_proxy",
    "rke2.anonymous_health",
    "provider",
    "rancher.letsencrypt",
    "rke2.install",
    "rke2.components",
    "files",
}
SECRETS = ("certs/*.key", "secrets/*.secret")


@pytest.fixture(autouse=True)
def _private_example_secrets() -> None:
    """Git keeps no file modes: a clone has 0644 secrets, which `validate` reports as errors
    (`plan` refuses them). The operator's step after a clone, done here."""
    for pattern in SECRETS:
        for secret in EXAMPLES.glob(pattern):
            secret.chmod(0o600)


def test_the_four_examples_exist():
    names = {path.name for path in VALID}
    assert {"lab.yaml", "existing-l4.yaml", "existing-l7.yaml", "aws.yaml"} <= names


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_example_has_no_error(path):
    validation = validate_file(path)
    assert [f for f in validation.findings if f.severity == "error"] == []
    assert validation.ok


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_fails_with_exactly_its_rule(path):
    validation = validate_file(path)
    assert not validation.ok
    assert {f.id for f in validation.findings if f.severity == "error"} == {path.stem}


def test_every_error_rule_has_an_invalid_example():
    assert set(RULE_IDS) >= ERROR_RULES
    assert {path.stem for path in INVALID} == ERROR_RULES | {SCHEMA_ID}


def test_rule_ids_are_unique():
    assert len(RULE_IDS) == len(set(RULE_IDS))


def test_examples_after_a_fresh_copy_need_chmod_600(tmp_path):
    """A clone has 0644 secrets: the examples that name one fail on exactly that file until
    it is made private, as `plan` would refuse it."""
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    secrets = [path for pattern in SECRETS for path in copy.glob(pattern)]
    for secret in secrets:
        secret.chmod(0o644)
    readable = {
        "existing-l4.yaml": {("provider", "dns.rfc2136.key_file")},
        "existing-l7.yaml": {("lb.layer7_tls", "load_balancer.tls.key")},
    }
    for path in sorted(copy.glob("*.yaml")):
        errors = {(f.id, f.path) for f in validate_file(path).findings if f.severity == "error"}
        assert errors == readable.get(path.name, set()), path.name
    for secret in secrets:
        secret.chmod(0o600)
    for path in sorted(copy.glob("*.yaml")):
        assert validate_file(path).ok, path.name
    for path in sorted((copy / "invalid").glob("*.yaml")):
        errors = {f.id for f in validate_file(path).findings if f.severity == "error"}
        assert errors == {path.stem}
