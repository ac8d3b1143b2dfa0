"""The spec check every changing command runs first: `validate`'s findings, or a refusal.

`plan` and `up` act on what the spec says; on a spec that `validate` rejects (two nodes
with one name, an address that is not one) they would plan and build something broken.
So they run the same `validate_file` as `rke2ha validate` before anything else, print its
error findings (with their fixes) and stop with exit 1. Warnings are printed as one line
each and do not stop them. `down` does not come through here: it must still take down
what a spec that has since become invalid once built.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from rke2ha.errors import InvalidError
from rke2ha.rules.validation import Validation, validate_file


def _print(validation: Validation, out: IO[str]) -> None:
    from rke2ha.rules.output import finding_text
    from rke2ha.terminal import make_console

    console = make_console(file=out)
    for finding in validation.findings:
        if finding.severity == "error":
            console.print(finding_text(validation, finding))
            console.print()
        elif finding.severity == "warning":
            where = f" {finding.path}" if finding.path else ""
            console.print(
                f"warning {finding.id}{where}: {finding.message}", markup=False, highlight=False
            )


def refuse_invalid_spec(path: Path | str | None, command: str, out: IO[str] | None = None) -> None:
    """Run `validate` on the spec file `path`; InvalidError (exit 1) when it finds an error.

    Errors and warnings go to `out` (stderr), errors as `validate` prints them.
    """
    validation = validate_file(path)
    _print(validation, out if out is not None else sys.stderr)
    if not validation.ok:
        raise InvalidError(
            f"{validation.filename} is invalid ({validation.summary()}); {command} stopped "
            "before doing anything. Fix the errors above (`rke2ha validate` lists them too)"
        )
