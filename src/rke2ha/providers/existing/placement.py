"""Where the engine runs when the spec has no `load_balancer.hosts`. Pure: no I/O.

As an enabled systemd unit on this machine when rke2ha can install one there: it runs
as root and systemd is the init system (the caller tests `/run/systemd/system`, the
check sd_booted(3) documents), so the engine survives a logout and a reboot. Otherwise
as a child process of rke2ha (`runner.py`), and the plan says why not a unit in one line.

A packaged haproxy/nginx unit that already runs (or is enabled) with a config rke2ha did
not write serves something of the machine's own: rke2ha does not take it over (it never
changes what it did not create), so the engine stays a child process here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rke2ha.lbhost.decide import HostFacts
from rke2ha.spec import Spec

UNIT_ENGINES = ("haproxy", "nginx", "builtin")


@dataclass(frozen=True)
class Placement:
    unit: bool  # True: an enabled systemd unit; False: a child process of rke2ha
    why: str  # one line for the plan


def packaged_in_use(unit: str, config: str, facts: HostFacts, config_ours: bool) -> str | None:
    """Why the machine's packaged unit is its own, or None when rke2ha may use it: it is
    active or enabled and its config lacks rke2ha's header."""
    in_use = facts.running or facts.enabled == "enabled"
    if not in_use or facts.config_sha is None or config_ours:
        return None
    how = "active" if facts.running else "enabled"
    return f"{unit} is {how} here with {config} that rke2ha did not write; it is left alone"


def placement(
    spec: Spec, *, root: bool, systemd_booted: bool, in_use: str | None = None
) -> Placement:
    """`in_use`: `packaged_in_use`'s answer for the spec's packaged engine on this machine."""
    lb = spec.load_balancer
    child = "the engine runs as a child process of rke2ha on this machine, not a systemd unit: "
    if not systemd_booted:
        return Placement(False, child + "systemd is not the init system here (PID 1)")
    if not root:
        return Placement(False, child + "installing a unit needs root (run `up` as root)")
    if lb.engine not in UNIT_ENGINES:
        return Placement(False, child + f"engine {lb.engine} has no unit")
    if lb.pair is not None:
        return Placement(
            False, child + "load_balancer.pair is rendered for its hosts, not installed here"
        )
    if lb.engine != "builtin":
        # The packaged unit reads /etc/<engine>: a layer 7 certificate or a health token
        # would have to be installed there too, as `lbhost.files` does on a host; this
        # machine does not do that yet.
        if lb.layer != 4:
            return Placement(False, child + f"layer 7 {lb.engine} is run from the state folder")
        if lb.health.token_file is not None:
            return Placement(
                False, child + "health.token_file reaches the engine through its environment"
            )
        if in_use is not None:
            return Placement(False, child + in_use)
    where = "its packaged unit" if lb.engine != "builtin" else "a unit rke2ha writes"
    return Placement(True, f"{lb.engine} runs as an enabled systemd unit on this machine ({where})")
