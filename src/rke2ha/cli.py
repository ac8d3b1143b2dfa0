"""The `rke2ha` command: parse arguments, call the library, print, exit.

No logic lives here. Each command group is a module in `rke2ha.commands` exposing
`register(subparsers)`, which adds its parser and sets `handler(args) -> int`. Errors the
user can act on (`Rke2haError`) become one message on stderr and their exit code; argparse
usage errors become one line naming the subcommand (`rke2ha.cli_errors`) and exit 2; an
OSError no library caught exits 2 with its file and reason; Ctrl-C exits 130; a reader
that stopped reading (`rke2ha down --json | head`) ends the command quietly with 141, as
a process killed by SIGPIPE would. Nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from rke2ha import __version__
from rke2ha.cli_errors import UsageErrorParser, report_unrecognized
from rke2ha.errors import EXIT_USAGE, Rke2haError

# What a shell reports for a process that SIGPIPE ended (128 + 13).
EXIT_BROKEN_PIPE = 141

# Order is the order of `rke2ha --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "rke2ha.commands.init",
    "rke2ha.commands.validate",
    "rke2ha.commands.preflight",
    "rke2ha.commands.lifecycle",
    "rke2ha.commands.check",
    "rke2ha.commands.render",
    "rke2ha.commands.lb",
    "rke2ha.commands.dns",
    "rke2ha.commands.lab",
    "rke2ha.commands.completion",
)


def build_parser() -> argparse.ArgumentParser:
    # Every subparser inherits this class: one-line usage errors everywhere.
    parser = UsageErrorParser(
        prog="rke2ha",
        description=(
            "Build, serve and verify the infrastructure of a highly available Rancher "
            "server on RKE2: three server nodes, a load balancer and a DNS record, "
            "all from one spec file."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rke2ha {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Known args only: extras are reported against the subcommand they were given to.
    args, extras = parser.parse_known_args(arguments)
    if extras:
        report_unrecognized(parser, args, arguments, extras)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # `rke2ha dns serve: error: ...`, like argparse names the subcommand in its errors.
    sub = getattr(args, f"{args.command}_command", None)
    name = f"{args.command} {sub}" if isinstance(sub, str) else args.command
    try:
        code = int(handler(args))
        # Now, not at interpreter exit: a reader that is gone must reach the handler below.
        sys.stdout.flush()
        return code
    except Rke2haError as err:
        print(f"rke2ha {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except OSError as err:
        # Last line of defence: a file or socket the library did not expect to fail.
        where = f"{err.filename}: " if err.filename else ""
        print(f"rke2ha {name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_USAGE


def _reader_gone() -> int:
    """The reader of stdout went away: say nothing (there is no one to tell) and make sure
    the interpreter's final flush of what is still buffered does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
