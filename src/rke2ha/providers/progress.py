"""Progress of `up` and `down` for people: one line per change with its outcome and time.

A rich status spinner shows the change in flight on a terminal; finished changes stay as
plain lines (`✓ + instance.node-1  i-0abc  3.2s`), which is also what lands in a log when
output is not a terminal.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape

from rke2ha.plan import Change

VERBS = {"create": "creating", "update": "changing", "replace": "replacing", "delete": "destroying"}


class RichReporter:
    def __init__(self, console: Console) -> None:
        self.console = console

    @contextlib.contextmanager
    def step(self, change: Change) -> Iterator[None]:
        started = time.monotonic()
        label = f"{change.symbol} {change.address}"
        try:
            with self.console.status(f"{VERBS[change.action]} {escape(change.address)} …"):
                yield
        except BaseException:
            took = time.monotonic() - started
            self.console.print(f"[red]✗[/red] {escape(label)}  failed after {took:.1f}s")
            raise
        took = time.monotonic() - started
        self.console.print(f"[green]✓[/green] {escape(label)}  {took:.1f}s", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(f"  {escape(text)}", highlight=False)
