"""`rke2ha init` through the real CLI: a commented spec that validate accepts, never an
overwrite, one-line errors for bad flags."""

from __future__ import annotations

import json

import pytest
import yaml

from rke2ha.errors import UsageError
from rke2ha.initspec import InitNode, parse_node


def _one_line_usage_error(result) -> str:
    assert result.code == 2, result.out + result.err
    assert result.out == ""
    assert len(result.err.splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    return result.err


@pytest.mark.parametrize("provider", ["existing", "aws", "lab"])
def test_init_writes_a_spec_validate_accepts(run_cli, tmp_path, provider):
    result = run_cli("init", "--provider", provider, cwd=tmp_path)
    assert result.code == 0, result.err
    spec = tmp_path / "rke2ha.yaml"
    assert f"wrote rke2ha.yaml (provider {provider})" in result.out
    checked = run_cli("validate", "-f", str(spec), "--json")
    assert checked.code == 0, checked.out + checked.err
    findings = json.loads(checked.out)["findings"]
    # existing: the spec cannot say which RKE2 the servers run, so anonymous_health draws a
    # warning saying what to verify (rule rke2.anonymous_health); nothing else may
    expected = ["rke2.anonymous_health"] if provider == "existing" else []
    assert [f["id"] for f in findings if f["severity"] != "info"] == expected
    data = yaml.safe_load(spec.read_text())
    assert data["provider"] == provider
    assert len(data["nodes"]) == 3


def test_every_key_has_its_comment(run_cli, tmp_path):
    assert run_cli("init", "--provider", "lab", cwd=tmp_path).code == 0
    lines = (tmp_path / "rke2ha.yaml").read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if line.strip() and line.lstrip()[0].isalpha()]
    assert len(keys) > 15
    for index in keys:
        assert lines[index - 1].lstrip().startswith("#"), lines[index]
    assert "# Loopback subnet (/26 or larger inside 127.0.0.0/8)" in "\n".join(lines)


def test_nodes_and_hostname_are_used(run_cli, tmp_path):
    result = run_cli(
        "init",
        "--provider",
        "existing",
        "--hostname",
        "rancher.corp.example.org",
        "--node",
        "s1=10.1.0.11",
        "--node",
        "s2=10.1.0.12",
        "--node",
        "s3=s3.corp.example.org",
        "-f",
        "corp.yaml",
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    data = yaml.safe_load((tmp_path / "corp.yaml").read_text())
    assert data["hostname"] == "rancher.corp.example.org"
    assert data["dns"]["zone"] == "corp.example.org"
    assert data["nodes"] == [
        {"name": "s1", "address": "10.1.0.11"},
        {"name": "s2", "address": "10.1.0.12"},
        {"name": "s3", "address": "s3.corp.example.org"},
    ]
    assert "REPLACE these documentation addresses" not in (tmp_path / "corp.yaml").read_text()
    assert run_cli("validate", "-f", str(tmp_path / "corp.yaml")).code == 0


def test_placeholders_are_marked(run_cli, tmp_path):
    assert run_cli("init", "--provider", "aws", cwd=tmp_path).code == 0
    text = (tmp_path / "rke2ha.yaml").read_text()
    assert "ami: ami-0123456789abcdef0  # REPLACE: an AMI of the region" in text
    assert "allowed_cidrs: [203.0.113.0/24]  # REPLACE" in text


def test_an_existing_file_is_never_overwritten(run_cli, tmp_path):
    spec = tmp_path / "rke2ha.yaml"
    spec.write_text("name: mine\n")
    err = _one_line_usage_error(run_cli("init", "--provider", "lab", cwd=tmp_path))
    assert "rke2ha.yaml already exists" in err
    assert "-f FILE" in err
    assert spec.read_text() == "name: mine\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--node", "n1=not an address"], "'not an address' is not an IPv4/IPv6 address"),
        (["--node", "=10.0.0.1"], "no node name"),
        (["--node", "bad name=10.0.0.1"], "node name 'bad name' must start"),
        (["--node", "n1=10.0.0.1", "--node", "n1=10.0.0.2"], "n1 is given twice"),
        (["--node", "n1"], "provider existing needs each server's address"),
        (["--node", "a=1.2.3.4", "--node", "b=1.2.3.5"], "--node: nodes: 2 server nodes"),
        (["--hostname", "rancher"], "--hostname 'rancher' is a single label"),
        (["--hostname", "Rancher.example.com"], "has capital letters"),
        (["--provider", "gcp"], "invalid choice: 'gcp'"),
    ],
)
def test_bad_flags_are_one_line_errors(run_cli, tmp_path, args, expected):
    if "--provider" not in args:
        args = ["--provider", "existing", *args]
    err = _one_line_usage_error(run_cli("init", *args, cwd=tmp_path))
    assert expected in err
    assert err.startswith("rke2ha init: error: ")
    assert not (tmp_path / "rke2ha.yaml").exists()


def test_aws_refuses_node_addresses_and_the_lab_its_subnet(run_cli, tmp_path):
    err = _one_line_usage_error(
        run_cli("init", "--provider", "aws", "--node", "a=10.0.0.1", cwd=tmp_path)
    )
    assert "provider aws assigns node addresses; give the name only (--node a)" in err
    lab = ["init", "--provider", "lab", "--node", "a=10.0.0.1", "--node", "b", "--node", "c"]
    err = _one_line_usage_error(run_cli(*lab, cwd=tmp_path))
    assert "outside lab.subnet" in err


def test_aws_and_lab_take_names_alone(run_cli, tmp_path):
    for provider in ("aws", "lab"):
        args = ["--node", "x1", "--node", "x2", "--node", "x3", "-f", f"{provider}.yaml"]
        assert run_cli("init", "--provider", provider, *args, cwd=tmp_path).code == 0
        assert run_cli("validate", "-f", str(tmp_path / f"{provider}.yaml")).code == 0


def test_parse_node():
    assert parse_node("node-1=10.0.1.11") == InitNode("node-1", "10.0.1.11")
    assert parse_node("node-1=fd00::1") == InitNode("node-1", "fd00::1")
    assert parse_node("node-1") == InitNode("node-1")
    for bad in ("node-1=", "=x", "-x=10.0.0.1", "n=a b", "n=http://x"):
        with pytest.raises(UsageError):
            parse_node(bad)


def test_json_names_the_file(run_cli, tmp_path):
    result = run_cli("init", "--provider", "existing", "-f", "x.yaml", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"ok": True, "file": "x.yaml", "provider": "existing"}
    assert (tmp_path / "x.yaml").is_file()


def test_flags_are_checked_before_the_file(run_cli, tmp_path):
    (tmp_path / "rke2ha.yaml").write_text("name: mine\n")
    for flags, says in (
        (["--node", "foo bar"], "--node 'foo bar'"),
        (["--hostname", "https://rancher.corp.example/"], "is a URL; give the host name alone "
         "(--hostname rancher.corp.example)"),
    ):  # fmt: skip
        err = _one_line_usage_error(run_cli("init", *flags, cwd=tmp_path))
        assert says in err and "already exists" not in err
    assert (tmp_path / "rke2ha.yaml").read_text() == "name: mine\n"
