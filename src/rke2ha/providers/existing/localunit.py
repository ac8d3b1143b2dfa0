"""The engine as a systemd unit on this machine: which unit, its text, its steps. Pure.

haproxy and nginx use their packaged units and configs, exactly as on
`load_balancer.hosts` (`lbhost.decide`: check before replace, the documented reload,
`down` undoes only what rke2ha did). The built-in load balancer has no package: rke2ha
writes its unit, `/etc/systemd/system/rke2ha-lb-<spec name>.service`, running
`<this python> -m rke2ha lb serve -f <the spec's copy>`: the copy the child-process
engine also runs (`builtin.py`: paths made absolute, a layer 7 certificate beside it),
kept by `up` in the state folder and removed by `down`; the server re-reads the spec on SIGHUP
(`rke2ha lb serve --help`), so the unit reloads with `kill -HUP $MAINPID`. The unit's
text carries the fingerprint of what the server will run, so a spec change changes the
unit and `decide` reloads it; the spec itself is checked first, with the loader
`lb serve` uses (`builtincheck`).

A unit file written or removed takes effect only after `systemctl daemon-reload`
(systemctl(1), daemon-reload: "reload all unit files"), so that step follows each; `down`
disables the unit before its file goes, while systemd can still name the links to remove.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from rke2ha.lbhost.decide import ENGINES, Engine, HostFacts, Record, Step, down_steps, up_steps
from rke2ha.providers.existing.engines import EnginePaths
from rke2ha.spec import Spec

UNIT_DIR = "/etc/systemd/system"
DAEMON_RELOAD = Step("enable", "systemctl daemon-reload", "systemctl daemon-reload")


def unit_name(spec: Spec) -> str:
    return f"rke2ha-lb-{spec.name}.service"


def served_spec_file(spec: Spec) -> Path:
    """The spec copy the built-in unit serves (the `current` version's, `EnginePaths`)."""
    return EnginePaths.under(spec.state_dir, "builtin").running_config.absolute()


def builtin_engine(spec: Spec, python: str) -> Engine:
    """The built-in load balancer as a `decide.Engine`: its 'config' is the unit file."""
    unit = unit_name(spec)
    return Engine("builtin", "", python, f"{UNIT_DIR}/{unit}", unit)


def engine_for(spec: Spec, python: str) -> Engine:
    name = spec.load_balancer.engine
    return builtin_engine(spec, python) if name == "builtin" else ENGINES[name]


def builtin_unit_text(spec: Spec, spec_file: Path, python: str, fingerprint: str) -> str:
    command = shlex.join([python, "-m", "rke2ha", "lb", "serve", "-f", str(spec_file)])
    return (
        "# Written by rke2ha (`up`); `rke2ha down` stops, disables and removes it.\n"
        f"# The built-in load balancer's version: {fingerprint[:16]}\n"
        "[Unit]\n"
        f"Description=rke2ha built-in load balancer for {spec.hostname} (spec {spec.name})\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        f"ExecStart={command}\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
        "Restart=on-failure\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def builtin_facts(facts: HostFacts) -> HostFacts:
    """rke2ha itself is the built-in engine's program: there is no package to install."""
    return replace(facts, package_installed=True, missing_modules=())


def check_spec_step(python: str, spec_file: Path) -> Step:
    return Step(
        "check",
        "check the spec as `rke2ha lb serve` will read it",
        shlex.join([python, "-m", "rke2ha.providers.existing.builtincheck", str(spec_file)]),
    )


def local_up_steps(
    engine: Engine,
    facts: HostFacts,
    text: str,
    previous: Record | None,
    check: Step | None = None,
) -> tuple[list[Step], Record]:
    """`decide.up_steps`; for the built-in unit with its own check and a daemon-reload."""
    if engine.name != "builtin":
        return up_steps(engine, facts, text, previous)
    steps, record = up_steps(engine, builtin_facts(facts), text, previous)
    out: list[Step] = []
    for step in steps:
        if step.kind == "check":
            if check is not None:
                out.append(check)
            continue
        out.append(step)
        if step.kind == "replace":
            out.append(DAEMON_RELOAD)
    return out, record


def local_down_steps(
    engine: Engine, facts: HostFacts, record: Record
) -> tuple[list[Step], list[str]]:
    if engine.name != "builtin":
        return down_steps(engine, facts, record)
    steps, notes = down_steps(engine, builtin_facts(facts), record)
    disable = [s for s in steps if s.kind == "disable"]
    rest = [s for s in steps if s.kind != "disable"]
    ordered: list[Step] = []
    for step in rest:
        if step.kind == "remove_config":
            ordered += disable
            disable = []
        ordered.append(step)
    ordered += disable
    if any(s.kind in ("remove_config", "disable") for s in ordered):
        ordered.append(DAEMON_RELOAD)
    return ordered, notes
