"""What one named check reports: pass, fail or skip, with a detail and, on failure, a fix.

A skipped check is never a pass: `ok` is true only for `pass`, and the run as a whole
fails only on `fail`. Skips say why the check could not run and how to enable it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    id: str  # `dns.record`, `node.node-1.6443`, ...
    status: Status
    detail: str  # what was observed, in one line
    fix: str = ""  # failing or skipped: what to do about it
    rule: str = ""  # stable rule id, `check.node.port`
    source: str = ""  # where the requirement comes from

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "rule": self.rule,
            "source": self.source,
        }


def all_ok(results: list[CheckResult]) -> bool:
    """True when no check failed (skips do not fail a run, nor count as passes)."""
    return not any(result.failed for result in results)
