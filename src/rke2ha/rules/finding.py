"""What a rule reports: a `Finding` (id, severity, message, fix, path, source, line).

A rule's check function yields `Issue`s (severity, path, message, fix); the `Rule` stamps
its stable id and the source of the requirement on them, so a check never repeats either.
Findings sort errors first, then by id and path, which keeps `validate --json` stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rke2ha.rules.facts import Facts
    from rke2ha.spec import Spec

Severity = Literal["error", "warning", "info"]
SEVERITY_RANK: dict[Severity, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One thing `validate` has to say about the spec."""

    id: str
    severity: Severity
    message: str  # what is wrong, and why it matters
    fix: str  # what to change
    path: str  # spec path at fault, `load_balancer.ports[2]`; "" for the whole spec
    source: str  # where the requirement comes from
    line: int | None = None  # line in the spec file, when known

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "path": self.path,
            "source": self.source,
            "line": self.line,
        }

    def at_line(self, line: int | None) -> Finding:
        return replace(self, line=line)


def sort_key(finding: Finding) -> tuple[int, str, str, str]:
    return (SEVERITY_RANK[finding.severity], finding.id, finding.path, finding.message)


@dataclass(frozen=True)
class Issue:
    """A finding before its rule stamps id and source on it."""

    severity: Severity
    path: str
    message: str
    fix: str


def error(path: str, message: str, fix: str) -> Issue:
    return Issue("error", path, message, fix)


def warning(path: str, message: str, fix: str) -> Issue:
    return Issue("warning", path, message, fix)


def info(path: str, message: str, fix: str) -> Issue:
    return Issue("info", path, message, fix)


Check = Callable[["Spec", "Facts"], Iterable[Issue]]


@dataclass(frozen=True)
class Rule:
    """A named requirement: a stable id, where it comes from, and the check that tests it."""

    id: str
    summary: str  # one line: what the rule asks for (for docs and `--list`)
    source: str
    check: Check

    def run(self, spec: Spec, facts: Facts) -> list[Finding]:
        return [
            Finding(self.id, i.severity, i.message, i.fix, i.path, self.source)
            for i in self.check(spec, facts)
        ]


def count_by_severity(findings: Iterable[Finding]) -> dict[Severity, int]:
    counts: dict[Severity, int] = {"error": 0, "warning": 0, "info": 0}
    for finding in findings:
        counts[finding.severity] += 1
    return counts
