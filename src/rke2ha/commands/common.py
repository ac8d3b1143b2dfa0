"""Arguments and output shared by every command: `-f FILE`, `--json`, printing JSON.

Imported by every command module when the parser is built, so it imports nothing heavy:
the spec model (pydantic) loads only when a handler asks for the spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rke2ha.spec import Spec


# shtab.FILE for the shells `rke2ha completion` supports, spelled out: importing shtab
# (~90 ms) for every command would slow them all down for the one that prints a script.
FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files"}


def port_offset(text: str) -> int:
    """argparse type of every `--port-offset N`: what is added to each port (0-60000, so
    the highest default port still fits under 65536)."""
    if not text.isdigit() or int(text) > 60000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number 0-60000")
    return int(text)


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    action = parser.add_argument(
        "-f",
        "--file",
        dest="spec_file",
        metavar="FILE",
        default=None,
        help="the spec file (default: ./rke2ha.yaml)",
    )
    action.complete = FILE_COMPLETION  # type: ignore[attr-defined]  # read by shtab


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON instead of text"
    )


def spec_from_args(args: argparse.Namespace) -> Spec:
    from rke2ha.specfile import load_spec

    return load_spec(args.spec_file)


def print_json(document: Any) -> None:
    """Stable JSON: sorted keys, two-space indent, one trailing newline."""
    json.dump(document, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
