"""The SSH adapter: read a load balancer host's facts and run `decide`'s steps there.

Each step is one command as root; a failed step stops the run with an error naming the
host and what failed. Two failures get their own message because the operator acts on
them differently: a package that cannot be installed (no package source reachable), and
a config the engine's own check rejects (the staged file is removed; nothing running was
touched, since the check comes before the move).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Sequence

from rke2ha.errors import InvalidError
from rke2ha.lbhost.decide import Engine, HostFacts, Step, facts_script, parse_facts
from rke2ha.lbhost.failures import JOURNAL_LINES, JOURNALED, journal_command, step_failure
from rke2ha.ssh.connection import Connection, connect
from rke2ha.ssh.target import Target

# apt may fetch and unpack for a while; every other step is quick.
PACKAGE_TIMEOUT = 600.0
Note = Callable[[str], None]


async def _facts(conn: Connection, engine: Engine, paths: Sequence[str] = ()) -> HostFacts:
    result = await conn.run(facts_script(engine, paths))
    if not result.ok:
        raise InvalidError(
            f"load balancer host {conn.target.node}: could not read its {engine.name} "
            f"facts:\n{result.tail()}"
        )
    return parse_facts(result.stdout)


async def _run(conn: Connection, engine: Engine, step: Step) -> str:
    """Run `step`; what a passing check printed (an engine that cannot check says so)."""
    host = conn.target.node
    slow = step.kind in ("install", "purge")
    limit = max(conn.target.command_timeout, PACKAGE_TIMEOUT) if slow else None
    result = await conn.run(step.command, timeout=limit, input=step.input)
    if result.ok:
        printed = result.stdout.strip().splitlines() if step.kind == "check" else []
        return printed[-1] if printed else ""
    if step.kind == "check":
        staged = dict.fromkeys((engine.staged, *step.cleanup))
        await conn.run("rm -f " + " ".join(shlex.quote(p) for p in staged))
    journal = ""
    if step.kind in JOURNALED:
        said = await conn.run(journal_command(engine))
        journal = said.tail(JOURNAL_LINES) if said.ok else ""
    raise InvalidError(
        step_failure(f"load balancer host {host}", host, engine, step, result.tail, journal)
    )


def read_facts(target: Target, engine: Engine, paths: Sequence[str] = ()) -> HostFacts:
    """The host's facts (read only), side files at `paths` included."""

    async def go() -> HostFacts:
        conn = await connect(target)
        try:
            return await _facts(conn, engine, paths)
        finally:
            await conn.close()

    return asyncio.run(go())


class StepFailed(InvalidError):
    """A step failed after `done` had run (the caller decides what to record)."""

    def __init__(self, error: InvalidError, done: list[Step]) -> None:
        super().__init__(str(error))
        self.done = done


def run(
    target: Target,
    engine: Engine,
    plan: Callable[[HostFacts], Sequence[Step]],
    note: Note,
    paths: Sequence[str] = (),
) -> list[Step]:
    """Read the facts again (they may have moved since `plan`), ask `plan` for the steps
    and run them in order; the steps that ran. StepFailed carries those on a failure."""
    done: list[Step] = []

    async def go() -> list[Step]:
        conn = await connect(target)
        try:
            facts = await _facts(conn, engine, paths)
            for step in plan(facts):
                try:
                    said = await _run(conn, engine, step)
                except InvalidError as err:
                    raise StepFailed(err, done) from None
                note(f"{target.node}: {step.what}" + (f" ({said})" if said else ""))
                done.append(step)
        finally:
            await conn.close()
        return done

    return asyncio.run(go())
