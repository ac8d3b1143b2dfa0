"""How `validate` prints findings: stable JSON for programs, one block each for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from rke2ha.rules.finding import Finding, Severity
from rke2ha.rules.validation import Validation

_STYLE: dict[Severity, str] = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def to_json(validation: Validation) -> dict[str, Any]:
    """`{"ok": bool, "findings": [...]}` in the rules' stable order."""
    return {"ok": validation.ok, "findings": [f.as_dict() for f in validation.findings]}


def _where(validation: Validation, finding: Finding) -> str:
    location = validation.filename + (f":{finding.line}" if finding.line else "")
    return f"{finding.path} ({location})" if finding.path else location


def finding_text(validation: Validation, finding: Finding) -> Text:
    """One block: `severity  id  path (file:line)`, then message, fix and source."""
    return finding_block(finding, _where(validation, finding))


def finding_block(finding: Finding, where: str) -> Text:
    """`severity  id  where`, then message, fix and source (validate and preflight)."""
    text = Text()
    text.append(f"{finding.severity:<8}", style=_STYLE[finding.severity])
    text.append(f"{finding.id}", style="bold")
    text.append(f"  {where}\n")
    text.append(f"  {finding.message}\n")
    text.append("  fix: ", style="green")
    text.append(f"{finding.fix}\n")
    text.append("  source: ", style="dim")
    text.append(finding.source, style="dim")
    return text


def print_text(validation: Validation, console: Console) -> None:
    for finding in validation.findings:
        console.print(finding_text(validation, finding))
        console.print()
    verdict = "valid" if validation.ok else "invalid"
    style = "bold green" if validation.ok else "bold red"
    line = Text(f"{validation.filename}: ")
    line.append(verdict, style=style)
    line.append(f" ({validation.summary()})")
    console.print(line)
