"""`rke2ha validate` through the real CLI (a subprocess, as a user runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rke2ha.rules import RULE_IDS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FINDING_KEYS = {"id", "severity", "message", "fix", "path", "source", "line"}


@pytest.fixture(autouse=True)
def _private_example_secrets() -> None:
    # A clone has 0644 secrets, which validate reports as errors: the operator's chmod.
    for secret in [*EXAMPLES.glob("certs/*.key"), *EXAMPLES.glob("secrets/*.secret")]:
        secret.chmod(0o600)


def _no_traceback(result) -> None:
    assert "Traceback" not in result.err + result.out


@pytest.mark.parametrize(
    "name", ["lab.yaml", "lab-l7.yaml", "existing-l4.yaml", "existing-l7.yaml", "aws.yaml"]
)
def test_valid_examples_exit_0(run_cli, name):
    result = run_cli("validate", "-f", f"examples/{name}")
    assert result.code == 0, result.out + result.err
    assert f"examples/{name}: valid (0 errors" in result.out
    assert "info    hostname.final  hostname" in result.out
    _no_traceback(result)


def test_text_output_has_one_block_per_finding(run_cli):
    result = run_cli("validate", "-f", "examples/invalid/lb.ports.yaml")
    assert result.code == 1
    lines = result.out.splitlines()
    start = lines.index("error   lb.ports  load_balancer.ports (examples/invalid/lb.ports.yaml:13)")
    block = lines[start : start + 4]
    assert "port 80" in block[1]
    assert block[2] == "  fix: add 80 to load_balancer.ports"
    assert block[3].startswith("  source: Rancher docs")
    assert lines[-1] == ("examples/invalid/lb.ports.yaml: invalid (1 error, 0 warnings, 1 info)")
    assert "\x1b[" not in result.out  # no colour codes when piped


def test_warnings_only_exit_0(run_cli, tmp_path):
    text = (EXAMPLES / "existing-l7.yaml").read_text()
    text = text.replace(
        "  http_timeout: 1800s", "  http_timeout: 1800s\n  shared_with: [grafana.example.com]"
    )
    # Our own copy of the example pair, key 0600: a fresh git clone leaves the committed
    # example key 0644, which draws a warning of its own.
    (tmp_path / "certs").mkdir()
    for name in ("rancher.example.com.crt", "rancher.example.com.key"):
        (tmp_path / "certs" / name).write_bytes((EXAMPLES / "certs" / name).read_bytes())
    (tmp_path / "certs" / "rancher.example.com.key").chmod(0o600)
    (tmp_path / "spec.yaml").write_text(text)
    result = run_cli("validate", "-f", str(tmp_path / "spec.yaml"))
    assert result.code == 0, result.out
    assert "warning lb.dedicated  load_balancer.shared_with" in result.out
    # anonymous_health with no RKE2 version in the spec: a warning naming what to verify
    assert "warning rke2.anonymous_health  rke2.anonymous_health" in result.out
    assert "valid (0 errors, 2 warnings, 1 info)" in result.out


def test_json_shape_and_stability(run_cli):
    first = run_cli("validate", "-f", "examples/invalid/lb.health.yaml", "--json")
    second = run_cli("validate", "-f", "examples/invalid/lb.health.yaml", "--json")
    assert first.code == second.code == 1
    assert first.out == second.out
    document = json.loads(first.out)
    assert first.out == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert set(document) == {"ok", "findings"}
    assert document["ok"] is False
    assert all(set(f) == FINDING_KEYS for f in document["findings"])
    assert [(f["id"], f["severity"]) for f in document["findings"]] == [
        ("lb.health", "error"),
        ("hostname.final", "info"),
    ]
    assert document["findings"][0]["path"] == "load_balancer.health.readyz_status"
    assert document["findings"][0]["line"] == 13


def test_json_ok_for_a_valid_spec(run_cli):
    result = run_cli("validate", "-f", "examples/lab.yaml", "--json")
    assert result.code == 0
    assert json.loads(result.out)["ok"] is True


def test_missing_file_exit_2_on_stderr_also_with_json(run_cli):
    for extra in ([], ["--json"]):
        result = run_cli("validate", "-f", "examples/nope.yaml", *extra)
        assert result.code == 2
        assert result.out == ""
        assert result.err.strip() == (
            "rke2ha validate: error: examples/nope.yaml: no such file; write one with "
            "`rke2ha init -f examples/nope.yaml` (a commented spec), or pass another with -f FILE"
        )


def test_no_spec_in_the_current_folder_exit_2(run_cli, tmp_path):
    result = run_cli("validate", cwd=tmp_path)
    assert result.code == 2
    assert "rke2ha.yaml" in result.err
    _no_traceback(result)


def test_yaml_syntax_error_exit_2_with_line(run_cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nnodes: [a, b\nhostname: y\n")
    for extra in ([], ["--json"]):
        result = run_cli("validate", "-f", str(tmp_path / "bad.yaml"), *extra)
        assert result.code == 2
        assert f"{tmp_path / 'bad.yaml'}:3:" in result.err
        assert result.out == ""
        _no_traceback(result)


def test_schema_error_exit_1_names_path_and_line(run_cli):
    result = run_cli("validate", "-f", "examples/invalid/spec.schema.yaml")
    assert result.code == 1
    assert "error   spec.schema  load_balancer.ports[2] (examples/invalid/spec.schema.yaml:13)" in (
        result.out
    )
    result = run_cli("validate", "-f", "examples/invalid/spec.schema.yaml", "--json")
    [finding] = json.loads(result.out)["findings"]
    assert (finding["id"], finding["path"], finding["line"]) == (
        "spec.schema",
        "load_balancer.ports[2]",
        13,
    )


def test_unknown_and_duplicate_keys_exit_1(run_cli, tmp_path):
    text = (EXAMPLES / "lab.yaml").read_text()
    (tmp_path / "unknown.yaml").write_text(text.replace("ingress: nginx", "ingres: nginx"))
    (tmp_path / "dup.yaml").write_text(text + "region: local\n")
    unknown = json.loads(run_cli("validate", "-f", str(tmp_path / "unknown.yaml"), "--json").out)
    assert [(f["id"], f["path"]) for f in unknown["findings"]] == [("spec.schema", "ingres")]
    dup = run_cli("validate", "-f", str(tmp_path / "dup.yaml"))
    assert dup.code == 1
    assert "error   spec.schema  region" in dup.out
    assert "key given twice (first on line 6)" in dup.out
    _no_traceback(dup)


def test_rules_lists_every_rule(run_cli):
    result = run_cli("validate", "--rules", "--json")
    assert result.code == 0
    listed = [rule["id"] for rule in json.loads(result.out)["rules"]]
    assert listed == list(RULE_IDS)
    assert all(rule["source"] for rule in json.loads(result.out)["rules"])


def test_help_mentions_exit_codes(run_cli):
    result = run_cli("validate", "--help")
    assert result.code == 0
    assert "Exit 0" in result.out and "--json" in result.out
