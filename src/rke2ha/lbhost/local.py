"""The local adapter: read this machine's facts and run `decide`'s steps here, as root.

The same steps the SSH adapter (`remote.py`) runs on a load balancer host, run with
/bin/sh on this machine instead, for the engine as a systemd unit where rke2ha runs.
Failures read the same: a package that cannot be installed, a config the engine's own
check rejects (the staged file is removed; nothing running was touched), or a step that
failed with the unit's last journal lines.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from rke2ha.errors import InvalidError
from rke2ha.lbhost.decide import Engine, HostFacts, Step, facts_script, parse_facts
from rke2ha.lbhost.failures import JOURNALED, journal_command, step_failure
from rke2ha.lbhost.remote import StepFailed
from rke2ha.preflight.lbhosts import MARKER

PACKAGE_TIMEOUT = 600.0
STEP_TIMEOUT = 120.0
HERE = "this machine"
Note = Callable[[str], None]
# sd_booted(3): systemd is the init system exactly when this directory exists
# (https://man7.org/linux/man-pages/man3/sd_booted.3.html, NOTES).
SYSTEMD_RUNTIME = Path("/run/systemd/system")


def systemd_booted() -> bool:
    return SYSTEMD_RUNTIME.is_dir()


def is_root() -> bool:
    return os.geteuid() == 0


def config_is_rke2ha(path: str) -> bool:
    """The file starts with rke2ha's generated-file header (`render.common.header_lines`,
    the marker `preflight.lbhosts` also looks for)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return MARKER in file.read(4096)
    except OSError:
        return False


def _sh(command: str, timeout: float, input: str | None = None) -> tuple[bool, str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "", f"did not finish in {timeout:g}s"
    return done.returncode == 0, done.stdout, done.stderr


def _tail(stdout: str, stderr: str, lines: int = 10) -> str:
    text = (stderr + stdout).strip().splitlines()
    return "\n".join(text[-lines:])


def read_facts(engine: Engine) -> HostFacts:
    ok, out, err = _sh(facts_script(engine), STEP_TIMEOUT)
    if not ok:
        raise InvalidError(f"{HERE}: could not read its {engine.name} facts:\n{_tail(out, err)}")
    return parse_facts(out)


def _run(engine: Engine, step: Step) -> str:
    slow = step.kind in ("install", "purge")
    ok, out, err = _sh(step.command, PACKAGE_TIMEOUT if slow else STEP_TIMEOUT, step.input)
    if ok:
        printed = out.strip().splitlines() if step.kind == "check" else []
        return printed[-1] if printed else ""
    if step.kind == "check":
        staged = dict.fromkeys((engine.staged, *step.cleanup))
        _sh("rm -f " + " ".join(shlex.quote(p) for p in staged), STEP_TIMEOUT)
    journal = ""
    if step.kind in JOURNALED:
        said_ok, said, _ = _sh(journal_command(engine), STEP_TIMEOUT)
        journal = said.strip() if said_ok else ""
    raise InvalidError(
        step_failure(HERE, HERE, engine, step, lambda n: _tail(out, err, n), journal)
    )


def run(
    engine: Engine,
    plan: Callable[[HostFacts], Sequence[Step]],
    note: Note,
) -> list[Step]:
    """Read the facts again, ask `plan` for the steps and run them in order; the steps
    that ran. StepFailed carries those on a failure (as `remote.run`)."""
    found = read_facts(engine)
    done: list[Step] = []
    for step in plan(found):
        try:
            said = _run(engine, step)
        except InvalidError as err:
            raise StepFailed(err, done) from None
        note(step.what + (f" ({said})" if said else ""))
        done.append(step)
    return done
