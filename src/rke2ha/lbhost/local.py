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
from rke2ha.lbhost.remote import StepFailed

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
    if step.kind == "install":
        names = " ".join(step.packages or (engine.package,))
        raise InvalidError(
            f"{HERE}: cannot install package {names}: `apt-get install {names}` failed:\n"
            f"{_tail(out, err, 8)}\nfix: give this machine a package source it can reach, or "
            f"install {names} by hand; nothing else was changed"
        )
    if step.kind == "check":
        _sh(f"rm -f {shlex.quote(engine.staged)}", STEP_TIMEOUT)
        raise InvalidError(
            f"{HERE}: {engine.name} rejects the rendered config; the running config and "
            f"{engine.unit} were not touched:\n{_tail(out, err, 20)}"
        )
    journal = ""
    if step.kind in ("start", "reload", "restart", "verify"):
        # systemctl only says "see journalctl": the unit's own last words are the cause.
        said_ok, said, _ = _sh(
            f"journalctl -u {shlex.quote(engine.unit)} -n 15 --no-pager -o cat", STEP_TIMEOUT
        )
        journal = f"\n{engine.unit}'s journal:\n{said.strip()}" if said_ok else ""
    raise InvalidError(
        f"{HERE}: {step.what} failed (`{step.command}`):\n{_tail(out, err)}{journal}"
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
