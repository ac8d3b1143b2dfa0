"""Loading a spec: missing file, not YAML, wrong types, unknown keys, duplicate keys.

Each bad input gives one message naming the file, the path and the line, with the exit
code of its kind: 2 when there is no usable YAML, 1 when the YAML does not fit the schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rke2ha.errors import EXIT_INVALID, EXIT_USAGE, UsageError
from rke2ha.rules.validation import SCHEMA_ID, parse_path, validate_file
from rke2ha.specfile import SpecSchemaError, load_spec
from rke2ha.yamlsource import DuplicateKeyError, format_path

GOOD = """\
name: rancher
hostname: rancher.example.com
provider: existing
nodes:
  - {name: node-1, address: 10.0.1.11}
  - {name: node-2, address: 10.0.2.11}
  - {name: node-3, address: 10.0.3.11}
load_balancer:
  address: 10.0.0.10
  ports: [80, 443, 6443, 9345]
  health: {interval: 500ms, timeout: 1s, fall: 2}
dns: {provider: manual, zone: example.com}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rke2ha.yaml"
    path.write_text(text)
    return path


def test_good_spec_loads_with_defaults(tmp_path):
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.load_balancer.health.interval == 0.5
    assert spec.health_path == "/healthz"
    assert spec.rancher.tls_source == "rancher"
    assert spec.source_dir == tmp_path.resolve()


def test_durations_accept_the_usual_units(tmp_path):
    text = GOOD.replace("interval: 500ms, timeout: 1s", "interval: 2m, timeout: 1.5s")
    health = load_spec(_write(tmp_path, text)).load_balancer.health
    assert (health.interval, health.timeout) == (120.0, 1.5)


def test_missing_file_is_exit_2(tmp_path):
    with pytest.raises(UsageError, match="no such file") as caught:
        load_spec(tmp_path / "absent.yaml")
    assert caught.value.exit_code == EXIT_USAGE
    with pytest.raises(UsageError):
        validate_file(tmp_path / "absent.yaml")


def test_directory_and_binary_files_are_exit_2(tmp_path):
    with pytest.raises(UsageError, match="directory"):
        validate_file(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(UsageError, match="UTF-8"):
        validate_file(binary)


def test_yaml_syntax_error_is_exit_2_with_line(tmp_path):
    path = _write(tmp_path, GOOD.replace("  ports: [80, 443, 6443, 9345]", "  ports: [80, 443"))
    with pytest.raises(UsageError) as caught:
        validate_file(path)
    assert caught.value.exit_code == EXIT_USAGE
    assert f"{path}:11:" in str(caught.value)
    assert "not valid YAML" in str(caught.value)


def test_wrong_type_names_path_and_line(tmp_path):
    path = _write(tmp_path, GOOD.replace("[80, 443, 6443, 9345]", "[80, 443, https, 9345]"))
    with pytest.raises(SpecSchemaError) as caught:
        load_spec(path)
    assert caught.value.exit_code == EXIT_INVALID
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == ("load_balancer.ports[2]", 10)
    validation = validate_file(path)
    assert not validation.ok
    assert [(f.id, f.path, f.line) for f in validation.findings] == [
        (SCHEMA_ID, "load_balancer.ports[2]", 10)
    ]


def test_out_of_range_value_names_path(tmp_path):
    path = _write(tmp_path, GOOD.replace("fall: 2", "fall: 0"))
    [finding] = validate_file(path).findings
    assert (finding.path, finding.line) == ("load_balancer.health.fall", 11)
    assert "greater than or equal to 1" in finding.message


def test_bad_duration_names_the_forms(tmp_path):
    path = _write(tmp_path, GOOD.replace("interval: 500ms", "interval: soon"))
    [finding] = validate_file(path).findings
    assert finding.path == "load_balancer.health.interval"
    assert "500ms" in finding.message


def test_unknown_key_names_path_line_and_allowed_keys(tmp_path):
    path = _write(tmp_path, GOOD.replace("  ports:", "  portz:"))
    [finding] = validate_file(path).findings
    assert (finding.id, finding.path, finding.line) == (SCHEMA_ID, "load_balancer.portz", 10)
    assert "unknown key" in finding.message and "ports" in finding.message
    assert "spelling" in finding.fix


def test_missing_required_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("hostname: rancher.example.com\n", ""))
    [finding] = validate_file(path).findings
    assert (finding.path, finding.message) == ("hostname", "required; add it")


def test_duplicate_key_is_exit_1_with_both_lines(tmp_path):
    path = _write(tmp_path, GOOD + "dns: {provider: builtin, zone: example.com}\n")
    with pytest.raises(DuplicateKeyError) as caught:
        load_spec(path)
    assert caught.value.exit_code == EXIT_INVALID
    assert (caught.value.path, caught.value.line, caught.value.first_line) == ("dns", 13, 12)
    [finding] = validate_file(path).findings
    assert (finding.id, finding.path, finding.line) == (SCHEMA_ID, "dns", 13)
    assert "line 12" in finding.message


def test_document_that_is_not_a_mapping(tmp_path):
    [finding] = validate_file(_write(tmp_path, "- just\n- a list\n")).findings
    assert finding.id == SCHEMA_ID
    assert "mapping" in finding.message


def test_empty_file_is_a_schema_error(tmp_path):
    [finding] = validate_file(_write(tmp_path, "")).findings
    assert finding.id == SCHEMA_ID


@pytest.mark.parametrize(
    "path", ["hostname", "load_balancer.ports[2]", "nodes[0].address", "a.b[10].c[0]"]
)
def test_parse_path_inverts_format_path(path):
    assert format_path(parse_path(path)) == path
