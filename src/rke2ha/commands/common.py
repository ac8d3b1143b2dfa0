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


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--file",
        dest="spec_file",
        metavar="FILE",
        default=None,
        help="the spec file (default: ./rke2ha.yaml)",
    )


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
