"""`plan` and `up` run `validate`'s rules first and stop on an error; `down` does not."""

from __future__ import annotations

from pathlib import Path

import pytest

SPEC = """\
name: rancher
hostname: rancher.example.com
provider: existing
nodes:
  - {{name: s1, address: 10.0.1.11}}
  - {{name: {second}, address: {address}}}
  - {{name: s3, address: 10.0.3.11}}
load_balancer: {{engine: haproxy, address: 10.0.0.10}}
dns: {{provider: manual, zone: example.com}}
"""


def _write(tmp_path: Path, second: str = "s2", address: str = "10.0.2.11") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(second=second, address=address))
    return path


@pytest.mark.parametrize("command", [["plan"], ["plan", "--detailed-exitcode"], ["up", "--yes"]])
def test_rule_error_stops_plan_and_up(run_cli, tmp_path: Path, command: list[str]) -> None:
    spec = _write(tmp_path, second="s1")
    result = run_cli(*command, "-f", str(spec), cwd=tmp_path)
    assert result.code == 1, result.out + result.err
    assert "error   nodes.unique  nodes[1].name" in result.err
    assert "node name 's1' is used by 2 nodes" in result.err
    assert f"rke2ha {command[0]}: error: {spec} is invalid (1 error" in result.err
    assert "Plan:" not in result.out
    assert "Traceback" not in result.err
    assert not (tmp_path / ".rke2ha").exists()


def test_schema_error_stops_plan(run_cli, tmp_path: Path) -> None:
    spec = _write(tmp_path, address="10.0.2.300")
    result = run_cli("plan", "-f", str(spec), cwd=tmp_path)
    assert result.code == 1
    assert "'10.0.2.300' is not an IPv4/IPv6 address or DNS name" in result.err


def test_down_still_reads_a_spec_with_rule_errors(run_cli, tmp_path: Path) -> None:
    # down takes down what the spec once built, even after the spec went wrong.
    spec = _write(tmp_path, second="s1")
    result = run_cli("down", "-f", str(spec), "--yes", cwd=tmp_path)
    assert "nodes.unique" not in result.err
    assert "is invalid" not in result.err


def test_local_file_problems_stop_validate_and_plan(run_cli, tmp_path: Path) -> None:
    # A pair whose VRRP password file is readable by others, and a two-line token file.
    text = (
        _write(tmp_path)
        .read_text()
        .replace(
            "load_balancer: {engine: haproxy, address: 10.0.0.10}",
            "load_balancer:\n  engine: haproxy\n  address: 10.0.0.10\n"
            "  hosts: [{name: lb1, address: 10.0.0.1}, {name: lb2, address: 10.0.0.2}]\n"
            "  vrrp: {auth_file: vrrp.pass}\n"
            "rke2: {token_file: tok}\nssh: {user: root}",
        )
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    (tmp_path / "vrrp.pass").write_text("pw123456\n")
    (tmp_path / "vrrp.pass").chmod(0o644)
    (tmp_path / "tok").write_text("tok\n\nsecondline\n")
    (tmp_path / "tok").chmod(0o600)
    validate = run_cli("validate", "-f", str(spec), cwd=tmp_path)
    assert validate.code == 1
    assert "error   files  load_balancer.vrrp.auth_file" in validate.out
    assert "readable by others (mode 644)" in validate.out
    assert "error   files  rke2.token_file" in validate.out
    assert "more than one line" in validate.out
    assert "pw123456" not in validate.out and "secondline" not in validate.out
    plan = run_cli("plan", "-f", str(spec), cwd=tmp_path)
    assert plan.code == 1 and "error   files  load_balancer.vrrp.auth_file" in plan.err
