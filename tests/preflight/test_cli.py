"""`rke2ha preflight` usage errors (exit 2, one line, no traceback) and a run against a
machine that is not there (exit 1, one node.ssh finding), without root or test machines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from tests.conftest import EXAMPLES, CliResult


def _spec(tmp_path: Path, ssh: dict[str, object] | None) -> Path:
    doc = yaml.safe_load((EXAMPLES / "existing-l4.yaml").read_text())
    doc.pop("ssh", None)
    if ssh is not None:
        doc["ssh"] = ssh
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_spec_without_ssh_is_a_usage_error(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    done = run_cli("preflight", "-f", str(_spec(tmp_path, None)))
    assert done.code == 2
    assert "rke2ha preflight: error: the spec has no ssh: block" in done.err
    assert "Traceback" not in done.err


def test_unknown_node_and_bad_jump_host(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"user": "root"})
    done = run_cli("preflight", "-f", str(spec), "--node", "nope")
    assert done.code == 2 and "--node nope: no such node in the spec (nodes: " in done.err
    spec = _spec(tmp_path, {"jump_host": "bastion:99999"})
    done = run_cli("preflight", "-f", str(spec))
    assert done.code == 1 and "ssh.jump_host" in done.err and "Traceback" not in done.err


def test_unreachable_nodes_are_findings_not_a_crash(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    spec = yaml.safe_load(_spec(tmp_path, None).read_text())
    # 127.0.117.0/24 (unused by other tests): nothing listens on port 1 there.
    for index, node in enumerate(spec["nodes"]):
        node["address"] = f"127.0.117.{index + 1}"
    spec["ssh"] = {"port": 1, "known_hosts": str(tmp_path / "kh"), "connect_timeout": "2s"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = run_cli("preflight", "-f", str(path), "--json")
    assert done.code == 1, done.err
    doc = json.loads(done.out)
    assert doc["ok"] is False
    assert {(f["id"], f["value"]) for f in doc["findings"]} == {("node.ssh", "unreachable")}
    assert len(doc["findings"]) == len(spec["nodes"])
    assert set(doc["findings"][0]) == {
        "id", "severity", "node", "value", "message", "fix", "path", "source", "line",
    }  # fmt: skip
    text = run_cli("preflight", "-f", str(path))
    assert text.code == 1
    assert "node.ssh" in text.out and "NOT ready" in text.out
