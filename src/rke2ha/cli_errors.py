"""One-line usage errors for `rke2ha`: the subcommand named, a close flag suggested.

`UsageErrorParser.error` prints `rke2ha lb serve: error: MESSAGE (see 'rke2ha lb serve
--help')` and exits 2, without argparse's usage block. `add_subparsers` makes its parsers
of the parent's class, so giving the top parser this class covers every subcommand.

argparse hands a subcommand's unrecognized arguments to the top parser, which would name
no subcommand; `report_unrecognized` finds the parser they were given to and reports there.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import NoReturn

from rke2ha.errors import EXIT_USAGE


class UsageErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        text = message.replace("\n", " ")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see '{self.prog} --help')\n")


def _chosen(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[str, argparse.ArgumentParser] | None:
    """The subcommand name and parser `parser` dispatched to, if any."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if isinstance(name, str) and name in action.choices:
                return name, action.choices[name]
    return None


def _levels(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]
) -> list[tuple[argparse.ArgumentParser, Sequence[str]]]:
    """Each parser on the way to the chosen subcommand, with the arguments it parsed itself
    (those before the next subcommand name; the last one gets all the rest)."""
    levels: list[tuple[argparse.ArgumentParser, Sequence[str]]] = []
    argv, start = list(argv), 0
    while (chosen := _chosen(parser, args)) is not None and chosen[0] in argv[start:]:
        index = argv.index(chosen[0], start)
        levels.append((parser, argv[start:index]))
        parser, start = chosen[1], index + 1
    levels.append((parser, argv[start:]))
    return levels


def _own_count(extras: Sequence[str], own_args: Sequence[str]) -> int:
    """How many leading `extras` came from `own_args` (argparse lists a parser's own
    extras, in order, before those of its subcommand)."""
    count = 0
    for arg in own_args:
        if count < len(extras) and arg == extras[count]:
            count += 1
    return count


def _suggestion(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """`; did you mean --backend?` for unknown long flags close to a visible option.

    Names are compared without their `--`, which would make any two flags look alike."""
    names = [
        option[2:]
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--")
    ]
    pairs: list[tuple[str, str]] = []
    for extra in extras:
        flag = extra.split("=", 1)[0]
        if flag.startswith("--") and flag != "--":
            matches = difflib.get_close_matches(flag[2:], names, n=1)
            pairs += [(flag, f"--{match}") for match in matches]
    if not pairs:
        return ""
    if len(pairs) == 1:
        return f"; did you mean {pairs[0][1]}?"
    return "; did you mean " + ", ".join(f"{match} (for {flag})" for flag, match in pairs) + "?"


def report_unrecognized(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: Sequence[str],
    extras: Sequence[str],
) -> NoReturn:
    """Report the first parser's unrecognized arguments (from `parse_known_args`) against
    the (sub)command they were given to, with a suggestion, and exit 2."""
    levels = _levels(parser, args, argv)
    remaining = list(extras)
    for depth, (level, own_args) in enumerate(levels):
        last = depth == len(levels) - 1
        own = remaining if last else remaining[: _own_count(remaining, own_args)]
        if own:
            level.error(f"unrecognized arguments: {' '.join(own)}{_suggestion(level, own)}")
        remaining = remaining[len(own) :]
    parser.error(f"unrecognized arguments: {' '.join(extras)}")  # not reached: last takes all
