"""Every source and fix a user sees cites something the user can open.

DESIGN.md is not in the repository nor in the package, so no rule, check, finding or other
string rke2ha prints may point at it. Comments and docstrings are for maintainers and may.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from rke2ha.check import catalog
from rke2ha.check.catalog import CheckRule
from rke2ha.rules import RULES, sources
from rke2ha.rules.finding import Finding, Rule
from rke2ha.rules.validation import SCHEMA_SOURCE, validate_file

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "rke2ha"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "examples" / "invalid").glob("*.yaml")
)
UNOPENABLE = "DESIGN.md"

CHECK_RULES: dict[str, CheckRule] = {
    name: value for name, value in vars(catalog).items() if isinstance(value, CheckRule)
}


def _visible(finding: Finding) -> str:
    return f"{finding.message}\n{finding.fix}\n{finding.source}"


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every str constant that is not a docstring (f-string parts included)."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_every_rule_source_is_openable(rule: Rule) -> None:
    source = rule.source
    assert source.strip()
    assert UNOPENABLE not in source


def test_every_check_catalog_source_is_openable() -> None:
    # The catalog is enumerated from the module, so a family added later is covered too;
    # the ids below guard against the enumeration silently finding nothing.
    assert {rule.id for rule in CHECK_RULES.values()} >= {
        "check.dns.record",
        "check.lb.port",
        "check.node.port",
        "check.http.redirect",
        "check.tls.certificate",
        "check.rancher.ping",
        "check.rancher.redirect",
        "check.rancher.websocket",
        "check.lb.spread",
        "check.registration",
    }
    for name, rule in CHECK_RULES.items():
        assert rule.source.strip(), name
        assert UNOPENABLE not in rule.source, name
        for result in (
            rule.passed("x", "detail"),
            rule.failed("x", "detail", "fix"),
            rule.skipped("x", "detail", "fix"),
        ):
            assert UNOPENABLE not in result.source, name


def test_every_source_constant_is_openable() -> None:
    constants = {
        name: value
        for name, value in vars(sources).items()
        if name.isupper() and isinstance(value, str)
    }
    assert {"HEALTH_DETECTION", "SECRETS", "README_SPEC", "README_LAB"} <= set(constants)
    for name, value in constants.items():
        assert UNOPENABLE not in value, name
    assert UNOPENABLE not in SCHEMA_SOURCE


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_findings_for_every_example_cite_openable_sources(path: Path) -> None:
    for finding in validate_file(path).findings:
        assert UNOPENABLE not in _visible(finding), finding


@pytest.mark.parametrize(
    ("text", "expected_fix"),
    [
        ("- just\n- a list\n", "start from examples/lab.yaml"),
        ("name: rancher\nname: again\n", "keep one name"),
        ("name: 7\n", "correct the value of"),
    ],
    ids=["not-a-mapping", "duplicate-key", "bad-value"],
)
def test_schema_findings_cite_openable_sources(
    tmp_path: Path, text: str, expected_fix: str
) -> None:
    spec = tmp_path / "rke2ha.yaml"
    spec.write_text(text)
    found = validate_file(spec).findings
    assert any(expected_fix in finding.fix for finding in found), found
    for finding in found:
        assert finding.source == SCHEMA_SOURCE
        assert UNOPENABLE not in _visible(finding), finding


def test_no_string_rke2ha_can_print_mentions_design_md() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    hits = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in files
        for line, text in _string_literals(ast.parse(path.read_text(), str(path)))
        if UNOPENABLE in text
    ]
    assert hits == []


def _headings(path: Path) -> list[str]:
    return [
        line.lstrip("#").strip().replace("`", "")
        for line in path.read_text().splitlines()
        if line.startswith("#")
    ]


def test_every_section_the_code_cites_exists() -> None:
    """`README: X` and `docs/architecture.md: X` in the source name a heading that exists."""
    documents = {
        "README": ROOT / "README.md",
        "docs/architecture.md": ROOT / "docs/architecture.md",
    }
    cited = re.compile(r"(README|docs/architecture\.md): ([A-Za-z][\w` -]*[\w`])")
    found: list[tuple[str, str, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = " ".join(path.read_text().split())  # a citation may wrap across lines
        found += [(str(path.relative_to(ROOT)), doc, name) for doc, name in cited.findall(text)]
    assert {doc for _, doc, _ in found} == set(documents)  # the pattern still finds both kinds
    missing = [
        f"{where}: {doc}: {name}"
        for where, doc, name in found
        if not any(h.startswith(name.replace("`", "")) for h in _headings(documents[doc]))
    ]
    assert missing == []
