"""The flags `rke2ha up` and `down` have for the lab only, and the hand-over to the
lab's `up`/`down`.

Kept apart from `console` so that building the CLI parser imports nothing heavy: the
lab's handlers (rich, the checks) are imported only when a lab spec is brought up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rke2ha.commands.common import port_offset
from rke2ha.spec import Spec
from rke2ha.specfile import DEFAULT_SPEC_FILE


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("provider lab (the whole topology on this machine)")
    group.add_argument(
        "--detach",
        action="store_true",
        help="return once the lab is verified and leave it running (default: stay in the "
        "foreground with a live status; Ctrl-C brings the lab down)",
    )
    group.add_argument(
        "--port-offset",
        type=port_offset,
        default=None,
        metavar="N",
        help="add N to every lab port (default: real ports as root, else lab.port_offset)",
    )
    group.add_argument(
        "--replace",
        action="store_true",
        help="stop a lab that another spec file (same name and folder) started, and start "
        "this one (default: refuse, naming the other spec)",
    )


def add_down_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("provider lab")
    group.add_argument(
        "--replace",
        action="store_true",
        help="stop the lab even when another spec file (same name and folder) started it "
        "(default: refuse, naming the other spec, as `up` does)",
    )


def _refuse_foreign(args: argparse.Namespace, spec: Spec, given: Path, command: str) -> None:
    """Another spec's running lab is not ours to stop or replace unless `--replace`."""
    from rke2ha.errors import InvalidError
    from rke2ha.providers.lab.records import foreign_lab_message, foreign_spec_file

    if getattr(args, "replace", False):
        return
    other = foreign_spec_file(spec, given)
    if other is not None:
        raise InvalidError(foreign_lab_message(spec, given, other, command))


def spec_file(args: argparse.Namespace) -> Path:
    return Path(args.spec_file) if args.spec_file else DEFAULT_SPEC_FILE


def run_up(args: argparse.Namespace, spec: Spec) -> int:
    from rke2ha.providers.lab.console import run_up as run

    given = spec_file(args)
    # Before anything starts or stops (a failed foreground `up` brings down what it may
    # have touched).
    _refuse_foreign(args, spec, given, "up")
    return run(args, spec, given)


def run_down(args: argparse.Namespace, spec: Spec) -> int:
    from rke2ha.providers.lab.console import run_down as run

    # Two specs with the same name and folder share one state: `down -f other.yaml` would
    # otherwise stop whichever lab runs there.
    _refuse_foreign(args, spec, spec_file(args), "down")
    return run(args, spec)
