"""How results reach people and machines: a rich table, or JSON.

JSON: `{"ok": bool, "checks": [{"id","ok","status","detail","fix","rule","source"}],
"summary": {"pass","fail","skip"}, "seconds": float}` plus `"drill"` when one ran.
The table shows each failure's rule id; its source is in the JSON.
`ok` is false only when a check failed; a skipped check has `ok: false` and
`status: "skip"`, so it is never mistaken for a pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rke2ha.check.drill import DrillReport
from rke2ha.check.lbdrill import FAULT_WORDS, LbDrillReport
from rke2ha.check.result import CheckResult, all_ok

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = Counter(result.status for result in results)
    return {status: counts.get(status, 0) for status in ("pass", "fail", "skip")}


def to_json(
    results: Sequence[CheckResult], seconds: float, drill: dict[str, Any] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "ok": all_ok(list(results)) and (drill is None or bool(drill.get("ok"))),
        "checks": [result.as_dict() for result in results],
        "summary": summary(results),
        "seconds": round(seconds, 3),
    }
    if drill is not None:
        document["drill"] = drill
    return document


def table(results: Sequence[CheckResult], title: str) -> Table:
    grid = Table(title=title, title_justify="left", show_lines=False, expand=False)
    grid.add_column("", no_wrap=True)
    grid.add_column("check", no_wrap=True)
    grid.add_column("detail", overflow="fold")
    for result in results:
        detail = Text(result.detail)
        if result.status != "pass" and result.fix:
            detail.append(f"\nfix: {result.fix}", style="cyan")
            if result.status == "fail":
                detail.append(f"\nrule: {result.rule}", style="dim")
        grid.add_row(Text(result.status.upper(), style=_STYLE[result.status]), result.id, detail)
    return grid


def print_text(
    results: Sequence[CheckResult], seconds: float, console: Console, title: str
) -> None:
    console.print(table(results, title))
    counts = summary(results)
    verdict = (
        Text("OK", style="bold green")
        if all_ok(list(results))
        else Text("FAILED", style="bold red")
    )
    console.print(
        Text.assemble(
            verdict,
            f": {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped "
            f"in {seconds:.2f}s",
        )
    )


def drill_table(drill: DrillReport) -> Table:
    settings = drill.settings
    grid = Table(
        title=(
            f"drill on {drill.node}: {settings.rate:g} requests/s for "
            f"{settings.phase_seconds:g}s per fault, fault at {settings.fault_after:g}s, "
            f"request timeout {settings.request_timeout:g}s"
        ),
        title_justify="left",
    )
    # Short, wrappable headings: the table must stay readable on an 80-column terminal.
    # "lost": in flight on the node when the fault hit; "after": failed after it left rotation.
    columns = ("fault", "req", "failed", "lost", "after", "left", "back", "slowest")
    for column in columns:
        grid.add_column(column, no_wrap=True)
    grid.add_column("served by", overflow="fold", min_width=16)
    seen_by = sorted({p.left_rotation_seen_by for p in drill.phases if p.left_rotation_seen_by})
    if seen_by:
        grid.caption = (
            "lost: in flight on the node at the fault; after: failed after it left rotation; "
            f"rotation seen by: {', '.join(seen_by)}"
        )
        grid.caption_justify = "left"
    for phase in drill.phases:
        left = (
            f"{phase.left_rotation_after:.2f}s"
            if phase.left_rotation_after is not None
            else "not seen"
        )
        back = (
            f"{phase.back_in_rotation_after:.2f}s"
            if phase.back_in_rotation_after is not None
            else Text("NOT BACK", style="bold red")
        )
        after = Text(str(phase.failed_after_left), style="green" if phase.ok else "bold red")
        served = ", ".join(f"{name or '?'} {n}" for name, n in sorted(phase.served_by.items()))
        grid.add_row(
            phase.fault,
            str(phase.requests),
            str(phase.failed),
            str(phase.lost_in_flight),
            after,
            left,
            back,
            f"{phase.slowest:.2f}s",
            served,
        )
    return grid


def print_drill(drill: DrillReport, console: Console) -> None:
    console.print(drill_table(drill))
    for phase in drill.phases:
        if phase.errors:
            console.print(f"{phase.fault}: {'; '.join(phase.errors)}", style="dim")
    verdict = "drill OK" if drill.ok else "drill FAILED"
    failed = sum(phase.failed for phase in drill.phases)
    after = sum(phase.failed_after_left for phase in drill.phases)
    console.print(
        Text(
            f"{verdict}: {after} failed requests after the node left rotation (target 0); "
            f"{failed - after} lost in flight on it when the fault hit",
            style="bold green" if drill.ok else "bold red",
        )
    )


def lb_drill_table(drill: LbDrillReport) -> Table:
    settings = drill.settings
    grid = Table(
        title=(
            f"load balancer pair drill: {settings.rate:g} requests/s through the virtual IP "
            f"for {settings.phase_seconds:g}s per fault, fault at {settings.fault_after:g}s, "
            f"request timeout {settings.request_timeout:g}s"
        ),
        title_justify="left",
        caption=(
            "moved: seconds from the fault until the other host held the address; lost: "
            "failed before the move; after: failed after it (target 0); flap: went back "
            "while still faulty; back: went back after the restore"
        ),
        caption_justify="left",
    )
    for column in ("fault", "from", "to", "moved", "target", "req", "lost", "after", "flap"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("back", overflow="fold")
    for report in drill.faults:
        moved = (
            Text(
                f"{report.moved_after:.2f}s", style="green" if report.moved_in_time else "bold red"
            )
            if report.moved_after is not None
            else Text("NEVER", style="bold red")
        )
        after = Text(
            str(report.failed_after_move),
            style="bold red" if report.failed_after_move else "green",
        )
        back = "-" if report.came_back is None else ("yes" if report.came_back else "no")
        grid.add_row(
            report.fault,
            report.holder,
            report.peer or "-",
            moved,
            f"< {report.target_seconds:g}s",
            str(report.requests),
            str(report.lost),
            after,
            Text("YES", style="bold red") if report.flapped_back else "no",
            back,
        )
    return grid


def print_lb_drill(drill: LbDrillReport, console: Console) -> None:
    console.print(lb_drill_table(drill))
    for report in drill.faults:
        words = FAULT_WORDS[report.fault].format(engine=drill.engine)
        console.print(
            f"{report.fault}: {words} on {report.holder}; {report.restore_note}", style="dim"
        )
        if report.errors:
            console.print(f"{report.fault}: {'; '.join(report.errors)}", style="dim")
    problems = [f"{r.fault}: {p}" for r in drill.faults for p in r.problems]
    if problems:
        console.print(Text("drill FAILED: " + "; ".join(problems), style="bold red"))
    else:
        console.print(Text("drill OK: every target met", style="bold green"))
