"""Validate a spec file: load it, run the rules, and place every finding on its YAML line.

A spec that does not fit the schema (or repeats a key) is reported as `spec.schema`
findings rather than an exception, so `validate --json` answers in one shape whatever is
wrong. A file that is missing or not YAML still raises UsageError (exit 2): there is no
spec to report on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rke2ha.rules import evaluate
from rke2ha.rules.finding import Finding, count_by_severity, sort_key
from rke2ha.specfile import SpecSchemaError, spec_from_source, spec_path_of
from rke2ha.yamlsource import DuplicateKeyError, PathKey, YamlSource, read_yaml_file

SCHEMA_ID = "spec.schema"
SCHEMA_SOURCE = (
    "rke2ha spec schema: docs/spec-reference.md, generated from src/rke2ha/spec.py "
    "(rke2ha README: The spec)"
)
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Validation:
    """The findings for one spec file."""

    filename: str
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not any(finding.severity == "error" for finding in self.findings)

    def summary(self) -> str:
        """`2 errors, 1 warning, 1 info`."""
        counts = count_by_severity(self.findings)
        parts = [f"{counts['error']} error{'s' * (counts['error'] != 1)}"]
        parts.append(f"{counts['warning']} warning{'s' * (counts['warning'] != 1)}")
        parts.append(f"{counts['info']} info")
        return ", ".join(parts)


def parse_path(path: str) -> PathKey:
    """`load_balancer.ports[2]` -> `("load_balancer", "ports", 2)` (inverse of format_path)."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(path))


def _schema_fix(path: str, message: str) -> str:
    if message.startswith("unknown key"):
        return f"remove {path} or correct its spelling"
    if message.startswith("required"):
        return f"add {path}"
    if not path:
        return (
            "write the spec as a mapping of keys: `rke2ha init -f NEW.yaml` writes a commented "
            "one, or start from examples/lab.yaml (rke2ha README: The spec)"
        )
    return f"correct the value of {path} (every field: docs/spec-reference.md)"


def _schema_findings(err: SpecSchemaError) -> list[Finding]:
    return [
        Finding(
            SCHEMA_ID,
            "error",
            problem.message,
            _schema_fix(problem.path, problem.message),
            problem.path,
            SCHEMA_SOURCE,
            problem.line,
        )
        for problem in err.problems
    ]


def _line(source: YamlSource, path: str) -> int | None:
    """The line of `path` or its nearest named ancestor; None rather than the file's start."""
    key = parse_path(path)
    for end in range(len(key), 0, -1):
        line = source.lines.get(key[:end])
        if line is not None:
            return line
    return None


def _locate(findings: list[Finding], source: YamlSource) -> list[Finding]:
    return [f.at_line(_line(source, f.path)) for f in findings]


def validate_file(path: Path | str | None = None, now: datetime | None = None) -> Validation:
    """Findings for the spec at `path` (default ./rke2ha.yaml), sorted, each with its line.

    Raises UsageError (exit 2) when the file is missing, unreadable or not YAML.
    """
    spec_path = spec_path_of(path)
    filename = str(spec_path)
    try:
        source = read_yaml_file(spec_path)
    except DuplicateKeyError as err:
        finding = Finding(
            SCHEMA_ID,
            "error",
            f"key given twice (first on line {err.first_line}); YAML keeps only the last one",
            f"keep one {err.path}",
            err.path,
            SCHEMA_SOURCE,
            err.line,
        )
        return Validation(filename, (finding,))
    try:
        spec = spec_from_source(source, spec_path.parent)
    except SpecSchemaError as err:
        return Validation(filename, tuple(sorted(_schema_findings(err), key=sort_key)))
    return Validation(filename, tuple(_locate(evaluate(spec, now), source)))
