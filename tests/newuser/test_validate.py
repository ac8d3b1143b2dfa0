"""`rke2ha validate` on the specs operators break: each answer names the field, line or
byte at fault and what to do, with the exit code the README promises ("The spec")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.newuser.conftest import Runner


def _broken(scratch: Path, name: str, old: str, new: str) -> str:
    text = (scratch / "existing-l4.yaml").read_text()
    assert old in text
    (scratch / name).write_text(text.replace(old, new, 1))
    return name


@pytest.mark.parametrize("name", ["lab.yaml", "existing-l4.yaml", "existing-l7.yaml", "aws.yaml"])
def test_every_example_is_valid(rke2ha: Runner, name: str) -> None:
    result = rke2ha("validate", "-f", name)
    assert result.code == 0, result.text
    assert f"{name}: valid (0 errors" in result.out


def test_top_level_typo_suggests_the_key(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "typo.yaml", "\nhostname:", "\nhostnme:")
    result = rke2ha("validate", "-f", spec)
    assert result.code == 1
    assert "hostnme (typo.yaml:4)" in result.out
    assert "unknown key (did you mean hostname?)" in result.out


def test_nested_typo_suggests_the_key(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "typo.yaml", "  ports:", "  prots:")
    result = rke2ha("validate", "-f", spec)
    assert result.code == 1
    assert "load_balancer.prots (typo.yaml:16)" in result.out
    assert "did you mean ports?" in result.out


def test_tab_indentation_says_use_spaces(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "tabs.yaml", "  layer: 4", "\tlayer: 4")
    result = rke2ha("validate", "-f", spec)
    assert result.code == 2
    assert "tabs.yaml:13:1: not valid YAML" in result.err
    assert "YAML indents with spaces, not tabs" in result.err


def test_wrong_indentation_points_at_the_line(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "indent.yaml", "  layer: 4", " layer: 4")
    result = rke2ha("validate", "-f", spec)
    assert result.code == 2
    assert "indent.yaml:14:9: not valid YAML: mapping values are not allowed here" in result.err
    assert "indentation against the line above" in result.err


def test_string_where_a_list_is_expected(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "ports.yaml", "[80, 443, 6443, 9345]", '"80,443,6443,9345"')
    result = rke2ha("validate", "-f", spec)
    assert result.code == 1
    assert "load_balancer.ports (ports.yaml:16)" in result.out
    assert "valid list, written as [a, b]" in result.out
    assert "(got '80,443,6443,9345')" in result.out


def test_nodes_as_a_scalar(rke2ha: Runner, scratch: Path) -> None:
    text = (scratch / "existing-l4.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("  - {name: node")]
    (scratch / "nodes.yaml").write_text("\n".join(lines).replace("nodes:", "nodes: node-1") + "\n")
    result = rke2ha("validate", "-f", "nodes.yaml")
    assert result.code == 1
    assert "nodes (nodes.yaml:8)" in result.out and "(got 'node-1')" in result.out


def test_quoted_ports_are_read_as_numbers(rke2ha: Runner, scratch: Path) -> None:
    # YAML's "80" is a string; pydantic's lax mode reads it as the port 80, which is what
    # the operator meant, so this stays valid.
    spec = _broken(scratch, "quoted.yaml", "[80, 443, 6443, 9345]", '["80", "443", "6443", "9345"]')
    assert rke2ha("validate", "-f", spec).code == 0


def test_port_out_of_range(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "big.yaml", "[80, 443, 6443, 9345]", "[80, 443, 6443, 99999]")
    result = rke2ha("validate", "-f", spec, "--json")
    assert result.code == 1
    (finding,) = json.loads(result.out)["findings"]
    assert finding["path"] == "load_balancer.ports[3]" and finding["line"] == 16
    assert "less than or equal to 65535" in finding["message"]
    assert "(got 99999)" in finding["message"]


def test_missing_dns_block(rke2ha: Runner, scratch: Path) -> None:
    text = (scratch / "existing-l4.yaml").read_text()
    head, _, tail = text.partition("dns:\n")
    rest = "\n".join(line for line in tail.splitlines() if not line.startswith("  "))
    (scratch / "nodns.yaml").write_text(head + rest + "\n")
    result = rke2ha("validate", "-f", "nodns.yaml")
    assert result.code == 1
    assert "dns (nodns.yaml:3)" in result.out and "required; add it" in result.out


def test_ip_as_hostname(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "ip.yaml", "hostname: rancher.example.com", "hostname: 10.0.0.10")
    result = rke2ha("validate", "-f", spec)
    assert result.code == 1
    assert "hostname.fqdn  hostname (ip.yaml:4)" in result.out
    assert "is an IP address" in result.out


def test_two_nodes(rke2ha: Runner, scratch: Path) -> None:
    text = (scratch / "existing-l4.yaml").read_text()
    (scratch / "two.yaml").write_text(
        "\n".join(line for line in text.splitlines() if "node-3" not in line) + "\n"
    )
    result = rke2ha("validate", "-f", "two.yaml")
    assert result.code == 1
    assert "nodes.count" in result.out and "2 server nodes" in result.out


def test_empty_file(rke2ha: Runner, scratch: Path) -> None:
    (scratch / "empty.yaml").write_text("")
    result = rke2ha("validate", "-f", "empty.yaml")
    assert result.code == 1
    assert "the file is empty; the spec must be a YAML mapping" in result.out
    assert "start from examples/lab.yaml" in result.out


def test_binary_file(rke2ha: Runner, scratch: Path) -> None:
    (scratch / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff")
    result = rke2ha("validate", "-f", "binary.yaml")
    assert result.code == 2
    assert "binary.yaml:1:9: not UTF-8 text (byte b'\\xd0'); save the file as UTF-8" in result.err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        # Line and column 1-based, columns in characters ("é" is two bytes, one column).
        (
            b"name: rancher\nhostname: \xc3\xa9x\xe9\n",
            "bad.yaml:2:13: not UTF-8 text (byte b'\\xe9')",
        ),
        (
            b"name: rancher\nhostname: r\x00\n",
            "bad.yaml:2:12: not valid YAML: character U+0000 is not allowed in YAML",
        ),
        (
            b"name: a\n---\nname: b\n",
            "bad.yaml:2: the spec must be one YAML document; remove the `---` on line 2",
        ),
    ],
)
def test_bad_bytes_and_documents_name_line_and_column(
    rke2ha: Runner, scratch: Path, content: bytes, says: str
) -> None:
    (scratch / "bad.yaml").write_bytes(content)
    result = rke2ha("validate", "-f", "bad.yaml")
    assert result.code == 2
    assert f"rke2ha validate: error: {says}" in result.err, result.err


def test_directory(rke2ha: Runner, scratch: Path) -> None:
    (scratch / "dir.yaml").mkdir()
    result = rke2ha("validate", "-f", "dir.yaml")
    assert result.code == 2
    assert "dir.yaml: is a directory" in result.err


def test_unreadable_file(rke2ha: Runner, scratch: Path) -> None:
    spec = scratch / "secret.yaml"
    spec.write_text((scratch / "lab.yaml").read_text())
    spec.chmod(0o000)
    result = rke2ha("validate", "-f", "secret.yaml", unprivileged=True)
    assert result.code == 2
    assert "secret.yaml: cannot read: Permission denied" in result.err


def test_file_that_does_not_exist(rke2ha: Runner) -> None:
    result = rke2ha("validate", "-f", "nowhere/rke2ha.yaml")
    assert result.code == 2
    assert "nowhere/rke2ha.yaml: no such file" in result.err


@pytest.mark.parametrize("command", [["validate"], ["render", "-o", "out"], ["plan"]])
def test_no_f_and_no_default_file(rke2ha: Runner, command: list[str]) -> None:
    result = rke2ha(*command)
    assert result.code == 2
    assert "no ./rke2ha.yaml here; pass the spec with -f FILE" in result.err


def test_empty_f(rke2ha: Runner) -> None:
    result = rke2ha("validate", "-f", "")
    assert result.code == 2
    assert "-f is empty" in result.err


def test_json_of_an_invalid_spec_is_json(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "typo.yaml", "\nhostname:", "\nhostnme:")
    result = rke2ha("validate", "-f", spec, "--json")
    assert result.code == 1
    paths = {finding["path"] for finding in json.loads(result.out)["findings"]}
    assert paths == {"hostname", "hostnme"}


def test_zero_health_interval_and_timeout(rke2ha: Runner, scratch: Path) -> None:
    spec = _broken(scratch, "zero.yaml", "interval: 2s, timeout: 1s", "interval: 0, timeout: 0s")
    result = rke2ha("validate", "-f", spec)
    assert result.code == 1
    assert "load_balancer.health.interval (zero.yaml:17)" in result.out
    assert "health interval 0: the load balancer would check every node without pause" in (
        result.out
    )
    assert "load_balancer.health.timeout (zero.yaml:17)" in result.out
