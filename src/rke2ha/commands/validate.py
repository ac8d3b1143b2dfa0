"""`rke2ha validate`: check the spec against the rules; exit 1 on any error finding.

The rules, the spec model and rich load inside the handler, so building the parser (for
`rke2ha --help` and every other command) stays fast.
"""

from __future__ import annotations

import argparse
import sys

from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json
from rke2ha.errors import EXIT_INVALID, EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check the spec against the rules (with fixes)",
        description=(
            "Check the spec against the rules of an HA Rancher-on-RKE2 setup. Every finding "
            "has a stable id, a severity, what is wrong, how to fix it and the source of the "
            "requirement. Exit 0 when there is no error (warnings and info allowed), 1 with "
            "any error, 2 when the file is missing or not YAML."
        ),
    )
    add_spec_argument(parser)
    add_json_argument(parser)
    parser.add_argument(
        "--rules", action="store_true", help="list the rules (id, what, source) and exit"
    )
    parser.set_defaults(handler=handle)


def _print_rules(as_json: bool) -> int:
    from rke2ha.rules import RULES

    catalogue = [{"id": r.id, "summary": r.summary, "source": r.source} for r in RULES]
    if as_json:
        print_json({"rules": catalogue})
    else:
        for rule in catalogue:
            print(f"{rule['id']:<20} {rule['summary']}\n{'':<20} source: {rule['source']}")
    return EXIT_OK


def handle(args: argparse.Namespace) -> int:
    if args.rules:
        return _print_rules(args.json)
    from rke2ha.rules.output import print_text, to_json
    from rke2ha.rules.validation import validate_file

    validation = validate_file(args.spec_file)
    if args.json:
        print_json(to_json(validation))
    else:
        from rke2ha.terminal import make_console

        # Piped output stays one line per field, so grep and diff see whole messages.
        console = make_console(file=sys.stdout)
        print_text(validation, console)
    return EXIT_OK if validation.ok else EXIT_INVALID
