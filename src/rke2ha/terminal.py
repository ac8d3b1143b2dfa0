"""The one way commands make a rich `Console`: wrapped for people, unwrapped for pipes.

On a terminal rich wraps at the terminal's width, which is what people want. Without one
(a pipe, a file, a CI log) rich would wrap at 80 columns, splitting a zone-file line the
operator must paste (a TXT record) or a check detail a script greps. There a line stays
one line (`soft_wrap`) and tables get room to keep each row on one line, unless `COLUMNS`
asks for a width, which rich honours in both cases.
"""

from __future__ import annotations

import os
from typing import IO

from rich.console import Console

# Wide enough for any table row of ours on one line; a table takes only what it needs.
PIPE_WIDTH = 1000


def make_console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A console on stdout (or stderr, or `file`) that wraps only on a terminal."""
    console = Console(stderr=stderr, file=file, highlight=False)
    if not console.is_terminal:
        console.soft_wrap = True
        if not os.environ.get("COLUMNS"):
            console.width = PIPE_WIDTH
    return console
