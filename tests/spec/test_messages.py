"""Schema errors in words: names say what they may hold, flags want true or false."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2ha.rules.names import hostname_problem
from rke2ha.specfile import SpecSchemaError, load_spec

from .test_addresses import _spec


def _problems(tmp_path: Path, document: dict[str, Any]) -> list[str]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SpecSchemaError) as caught:
        load_spec(path)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_spec_name_pattern_in_words(tmp_path: Path) -> None:
    document = _spec()
    document["name"] = "Rancher_1"
    (problem,) = _problems(tmp_path, document)
    assert problem == (
        "name: may hold only lowercase letters, digits and '-', starting with a letter, not "
        "ending with '-', 2 to 32 characters (e.g. rancher-prod) (got 'Rancher_1')"
    )
    assert "[a-z]" not in problem


def test_node_name_pattern_in_words(tmp_path: Path) -> None:
    document = _spec()
    document["nodes"][0]["name"] = "-n1"
    (problem,) = _problems(tmp_path, document)
    assert problem.startswith("nodes[0].name: may hold only letters, digits, '.', '_' and '-'")


@pytest.mark.parametrize("value", ["yes", "no", "true", 1])
def test_flags_take_true_or_false_only(tmp_path: Path, value: object) -> None:
    document = _spec()
    document["rke2"] = {"anonymous_health": value}
    (problem,) = _problems(tmp_path, document)
    assert problem.startswith("rke2.anonymous_health: write true or false (unquoted)")


def test_hostname_given_as_a_url() -> None:
    assert hostname_problem("https://rancher.corp.example/") == (
        "is a URL; give the host name, not a URL (drop https:// and the path)",
        "write only the host name: rancher.corp.example",
    )
