"""Commands and paths printed for people to copy: they must run as printed.

`make demo` runs `.venv/bin/rke2ha`, which is not on PATH; a hint that says
`rke2ha down -f FILE` fails with "command not found" and a placeholder. `program()` is
rke2ha as this process was started (`rke2ha` only when that name on PATH is this very
program), `shown_path()` a path as short as it can be from the current folder, and
`command()` the two joined and shell-quoted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rke2ha.spec import Spec

NAME = "rke2ha"


def _relative(path: Path) -> str:
    """`path` relative to the current folder when it is inside it, else absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def shown_path(path: Path | str) -> str:
    return _relative(Path(path))


def program(argv0: str | None = None) -> str:
    """How to run rke2ha again from here, e.g. `rke2ha`, `.venv/bin/rke2ha`,
    `python3 -m rke2ha`."""
    first = argv0 if argv0 is not None else sys.argv[0]
    if Path(first).name == NAME:
        on_path = shutil.which(NAME)
        if on_path is not None and os.path.samefile(on_path, first):
            return NAME
        if os.sep in first or Path(first).is_file():
            shown = _relative(Path(first))
            return shown if os.sep in shown else f".{os.sep}{shown}"
    # `python -m rke2ha` (argv[0] is .../rke2ha/__main__.py) or anything else.
    python = _relative(Path(sys.executable)) if sys.executable else "python3"
    return f"{python} -m {NAME}"


def command(*args: str | Path) -> str:
    """`program()` followed by `args` (paths shortened), each quoted for a POSIX shell."""
    words = [shown_path(a) if isinstance(a, Path) else a for a in args]
    return " ".join(shlex.quote(w) for w in [*shlex.split(program()), *words])


def spec_command(spec: Spec, *args: str | Path) -> str:
    """`command(*args, "-f", <the spec's file>)`; without a known file, `-f FILE`."""
    source = spec.source_file
    if source is None:
        return f"{command(*args)} -f FILE"
    return command(*args, "-f", source)
