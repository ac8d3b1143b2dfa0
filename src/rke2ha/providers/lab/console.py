"""What people see of the lab's `up` and `down`, and the foreground loop of `up`.

`run_up` prints the plan's outcome, the check table, the Rancher URL, the CA file and
copy-paste commands (curl with `--cacert` and `--resolve`, dig against the lab DNS), and
how long the lab took from `up` to verified. Without `--detach` it then shows a live
status (rich `Live`, one refresh a second) until Ctrl-C or SIGTERM, and brings down what
this `up` started; a lab that was already running when `up` was called is left running.
With `--json` the document goes to stdout and everything for people to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rke2ha.check.report import print_drill, print_text, to_json
from rke2ha.commands.common import print_json
from rke2ha.errors import EXIT_INVALID, EXIT_OK, Rke2haError
from rke2ha.invocation import command
from rke2ha.plan import Plan
from rke2ha.providers.lab import session
from rke2ha.providers.lab.status import COLUMNS, collect, rows
from rke2ha.providers.lab.topology import LabTopology
from rke2ha.providers.progress import RichReporter
from rke2ha.spec import Spec
from rke2ha.terminal import make_console

REFRESH = 1.0


def _console(args: argparse.Namespace) -> Console:
    return make_console(stderr=bool(getattr(args, "json", False)))


def _print_plan(plan: Plan, console: Console) -> None:
    # The plan's notes were reported before its changes were applied.
    if not plan.has_changes:
        console.print("No changes: the lab is already up and matches the spec.")
    elif plan.spec_changes:
        # Why the processes were restarted, in spec terms rather than digests.
        since = f" (the lab ran from {plan.spec_from})" if plan.spec_from else ""
        console.print(f"spec fields changed{escape(since)}:")
        for change in plan.spec_changes:
            console.print(f"  {escape(change.describe())}")


def connection_lines(topology: LabTopology, spec_file: Path) -> list[str]:
    return [
        f"Rancher URL   {topology.rancher_url}",
        f"CA file       {topology.ca_file}",
        f"DNS server    {topology.dns_host}:{topology.dns_port}",
        *(f"  $ {line}" for line in topology.commands()),
        f"Stop it with  {command('down', '-f', spec_file)}",
    ]


def up_document(result: session.LabUp, spec_file: Path) -> dict[str, Any]:
    topology = result.topology
    check = result.check
    return {
        "ok": result.ok,
        "healthy": result.healthy,
        "seconds_to_verified": round(result.seconds, 3),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "plan": result.plan.to_json(),
        "applied": [c.to_json() for c in result.applied],
        "ready": result.ready,
        "url": topology.rancher_url,
        "ca_file": str(topology.ca_file),
        "port_offset": topology.offset,
        "commands": topology.commands(),
        "stop": command("down", "-f", spec_file),
        "check": to_json(
            check.results, check.seconds, check.drill.as_dict() if check.drill else None
        )
        if check is not None
        else None,
    }


def print_up(result: session.LabUp, console: Console, spec: Spec, spec_file: Path) -> None:
    for line in result.ready:
        console.print(f"lab: {escape(line)}", highlight=False)
    if result.check is not None:
        print_text(
            result.check.results, result.check.seconds, console, f"rke2ha check: {spec.hostname}"
        )
        if result.check.drill is not None:
            print_drill(result.check.drill, console)
    for line in connection_lines(result.topology, spec_file):
        console.print(escape(line), highlight=False, soft_wrap=True)
    verdict = "verified" if result.ok else "NOT verified"
    style = "bold green" if result.ok else "bold red"
    console.print(Text(f"lab {verdict} {result.seconds:.2f}s after `up` started", style=style))


def run_up(args: argparse.Namespace, spec: Spec, spec_file: Path) -> int:
    """`rke2ha up` for provider lab (`--detach`, `--port-offset`, `--json`)."""
    console = _console(args)
    started_here = False
    try:
        result = session.up(
            spec,
            spec_file,
            port_offset=getattr(args, "port_offset", None),
            reporter=RichReporter(console),
            wait_timeout=min(float(getattr(args, "wait_timeout", 60.0)), 60.0),
            force_unlock=bool(getattr(args, "force_unlock", False)),
        )
        started_here = bool(result.applied)
    except BaseException:
        if not getattr(args, "detach", False):
            # A foreground lab that failed to start leaves nothing behind.
            with contextlib.suppress(Rke2haError):
                session.down(spec)
        raise
    for notice in result.notices:
        console.print(f"[yellow]notice:[/yellow] {escape(notice)}")
    _print_plan(result.plan, console)
    print_up(result, console, spec, spec_file)
    if args.json:
        print_json(up_document(result, spec_file))
    code = EXIT_OK if result.ok else EXIT_INVALID
    if getattr(args, "detach", False):
        return code
    foreground(spec, result.topology, console, stop_on_exit=started_here)
    return code


def _status_view(spec: Spec, topology: LabTopology, since: float) -> Group:
    grid = Table(title_justify="left", expand=False)
    for column in COLUMNS:
        grid.add_column(column, no_wrap=True)
    for row in rows(collect(spec, topology)):
        grid.add_row(*row)
    grid.title = (
        f"lab {topology.name}: up {time.monotonic() - since:.0f}s  {topology.rancher_url}"
        + _offset_note(topology)
    )
    hint = Text("Ctrl-C stops the lab", style="dim")
    return Group(grid, hint)


def _offset_note(topology: LabTopology) -> str:
    return f"  (ports +{topology.offset})" if topology.offset else ""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def foreground(spec: Spec, topology: LabTopology, console: Console, *, stop_on_exit: bool) -> None:
    """Live status until Ctrl-C / SIGTERM; then bring down what this `up` started."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    since = time.monotonic()
    console.print("Running in the foreground: Ctrl-C stops the lab.")
    try:
        with Live(
            _status_view(spec, topology, since),
            console=console,
            refresh_per_second=2,
            transient=False,
        ) as live:
            while True:
                time.sleep(REFRESH)
                live.update(_status_view(spec, topology, since))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.line()
    if not stop_on_exit:
        console.print("The lab was already running before this `up`; it keeps running.")
        return
    console.print("Stopping the lab …")
    result = session.down(spec, reporter=RichReporter(console))
    print_down(result, console)


def print_down(result: session.LabDown, console: Console) -> None:
    for notice in result.notices:
        console.print(f"[yellow]notice:[/yellow] {escape(notice)}")
    for note in result.plan.notes:
        console.print(f"[cyan]note:[/cyan] {escape(note)}")
    if not result.plan.has_changes:
        console.print("Nothing to stop: no lab process is recorded for this spec.")
    else:
        console.print(f"Stopped {len(result.stopped)} lab process(es).")
    for line in result.leftovers:
        console.print(f"[red]left behind:[/red] {escape(line)}")


def run_down(args: argparse.Namespace, spec: Spec) -> int:
    """`rke2ha down` for provider lab: no confirmation (it only stops local processes)."""
    console = _console(args)
    result = session.down(
        spec,
        reporter=RichReporter(console),
        force_unlock=bool(getattr(args, "force_unlock", False)),
    )
    print_down(result, console)
    if args.json:
        print_json(
            {
                "ok": not result.leftovers,
                "plan": result.plan.to_json(),
                "stopped": [c.to_json() for c in result.stopped],
                "leftovers": result.leftovers,
            }
        )
    return EXIT_OK if not result.leftovers else EXIT_INVALID


def print_status(spec: Spec, spec_file: Path, *, as_json: bool) -> int:
    """`rke2ha lab status`: exit 0 when every lab process runs (nodes ready), else 1."""
    from rke2ha.providers.lab.provider import LabProvider
    from rke2ha.providers.lab.records import foreign_lab_message, foreign_spec_file

    other = foreign_spec_file(spec, spec_file)
    if other is not None:
        # Its processes, ports and rotation are another spec's: never shown as this one's.
        message = foreign_lab_message(spec, spec_file, other)
        if as_json:
            print_json({"all_up": False, "up": False, "started_from": other, "detail": message})
        else:
            make_console().print(escape(message))
        return EXIT_INVALID
    topology = LabProvider(spec).topology
    status = collect(spec, topology)
    if as_json:
        print_json(dict(status.as_dict(), url=topology.rancher_url, port_offset=topology.offset))
        return EXIT_OK if status.all_up else EXIT_INVALID
    console = make_console()
    if status.recorded:
        title = f"lab {topology.name}  {topology.rancher_url}{_offset_note(topology)}"
        grid = Table(title=title, title_justify="left")
        for column in COLUMNS:
            grid.add_column(column, no_wrap=True)
        for row in rows(status):
            grid.add_row(*row)
        console.print(grid)
    if not status.any_up:
        # Connection hints for a lab that is not there would only lead to refused curls.
        console.print(
            f"lab {topology.name} is not up: no lab process of this spec runs. "
            f"Start it with: {command('up', '-f', spec_file)}"
        )
        return EXIT_INVALID
    for line in connection_lines(topology, spec_file):
        console.print(escape(line), highlight=False, soft_wrap=True)
    return EXIT_OK if status.all_up else EXIT_INVALID
