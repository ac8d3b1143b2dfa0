"""What a failed lab process said in *this* run, the cause first.

A lab process appends to one log file across runs, so the tail of the file may be an
old run's error (an admin port taken yesterday) printed before today's real cause.
`excerpt` is given only the bytes written since this run's start marker and returns the
line that names the failure: rke2ha's own `...: error: ...` line, else the last line of a
Python traceback (`OSError: ...`), else the last lines. Traceback frames (the
`Traceback` header and indented lines, uvloop's included) are left out; the file keeps
them. `read_since` is the only I/O.
"""

from __future__ import annotations

import re
from pathlib import Path

# `rke2ha lb serve: error: ...`, `rke2ha lab node: error: ...`
_OWN_ERROR = re.compile(r"^rke2ha [a-z ]+(?:\d+)?: error: ")
# `OSError: [Errno 98] ...`, `uvloop.loop.SomeError: ...`: a traceback's last line.
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b")
# The marker `start_process` writes before each start.
START_MARKER = "rke2ha lab: starting"


def _is_frame(line: str) -> bool:
    return line.startswith((" ", "\t", "Traceback (most recent call last)")) or line in (
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    )


def excerpt(text: str, tail: int = 2) -> str:
    """One line for an error message: the cause alone when a line names it, else the
    last `tail` lines (the log file has the rest)."""
    lines = [
        line.rstrip()
        for line in text.splitlines()
        if line.strip() and START_MARKER not in line and not _is_frame(line)
    ]
    if not lines:
        return "(nothing in its log for this run)"
    for pattern in (_OWN_ERROR, _EXCEPTION):
        causes = [line for line in lines if pattern.match(line)]
        if causes:
            return causes[-1]
    return " | ".join(lines[-tail:])


def read_since(path: Path, offset: int) -> str:
    """The log from byte `offset` on (this run's part); '' when unreadable."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def log_excerpt(path: Path, offset: int) -> str:
    return excerpt(read_since(path, offset))
