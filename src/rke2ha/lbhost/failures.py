"""The words of a step that failed, the same wherever the steps run: on a load balancer
host over SSH (`remote.py`) or on this machine (`local.py`). The adapters run the commands
and clean up; this module only says what went wrong and what to do."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from rke2ha.lbhost.decide import Engine, Step

# Steps whose failure systemctl explains only with "see journalctl": the unit's own last
# words are the cause, so they go into the message.
JOURNALED = ("start", "reload", "restart", "verify")
JOURNAL_LINES = 15


def journal_command(engine: Engine) -> str:
    return f"journalctl -u {shlex.quote(engine.unit)} -n {JOURNAL_LINES} --no-pager -o cat"


def step_failure(
    where: str, machine: str, engine: Engine, step: Step, tail: Callable[[int], str], journal: str
) -> str:
    """The error for `step` failing on `machine` (named `where` in the message: "load
    balancer host lb-1", "this machine"); `tail(n)`: the command's last n lines of output;
    `journal`: the unit's last lines, or "" when not read."""
    if step.kind == "install":
        names = " ".join(step.packages or (engine.package,))
        return (
            f"{where}: cannot install package {names}: `apt-get install {names}` failed (no "
            f"package source that {machine} can reach has it):\n{tail(8)}\nfix: give {machine} "
            "a package source it can reach (/etc/apt/sources.list, a proxy or a local mirror), "
            f"or install {names} there by hand; nothing else was changed"
        )
    if step.kind == "check":
        return (
            f"{where}: {engine.binary} rejects the rendered config; the running config and "
            f"{engine.unit} were not touched:\n{tail(20)}"
        )
    said = f"\n{engine.unit}'s journal:\n{journal}" if journal else ""
    return f"{where}: {step.what} failed (`{step.command}`):\n{tail(12)}{said}"
