"""A pre-flight finding: a `rules.finding.Finding` (id, severity, message, fix, path,
source) that also names the node and the value found there, so `validate`, `check` and
`preflight` findings read and parse alike."""

from __future__ import annotations

from dataclasses import dataclass

from rke2ha.rules.finding import Finding, Severity


@dataclass(frozen=True)
class NodeFinding(Finding):
    node: str = ""  # the spec's node name ("" for the spec as a whole)
    value: str = ""  # what was found on the node, in one line

    def as_dict(self) -> dict[str, object]:
        document = super().as_dict()
        document.update(node=self.node, value=self.value)
        return document


@dataclass(frozen=True)
class Problem:
    """What a check says about a node before the node and check are stamped on it."""

    severity: Severity
    message: str
    fix: str


@dataclass(frozen=True)
class Outcome:
    """One check on one node: the value found and, when it fails, the problem."""

    id: str
    value: str
    problem: Problem | None = None

    @property
    def status(self) -> str:
        return "pass" if self.problem is None else self.problem.severity

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "value": self.value}
