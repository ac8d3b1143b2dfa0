"""`rke2ha init`: write a first, commented spec that `rke2ha validate` accepts.

Never overwrites: an existing file is refused (exit 2) with the way out. The spec text
comes from `rke2ha.initspec`, loaded inside the handler to keep `rke2ha --help` fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json
from rke2ha.commands.hostname_arg import host_name
from rke2ha.errors import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write a first, commented spec file",
        description=(
            "Write a commented spec for one provider, which `rke2ha validate` accepts. "
            "Placeholders you must change are marked REPLACE. An existing file is never "
            "overwritten (exit 2)."
        ),
    )
    parser.add_argument(
        "--provider",
        choices=("existing", "aws", "lab"),
        default="lab",
        help="where the nodes come from (default: lab, everything on this machine)",
    )
    parser.add_argument(
        "--hostname",
        type=host_name,
        metavar="NAME",
        help="Rancher's URL host, a name, not a URL (default: an example name)",
    )
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="a server node (repeat per node; NAME alone where the provider assigns addresses)",
    )
    add_spec_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from rke2ha.initspec import parse_node, starter_spec
    from rke2ha.specfile import DEFAULT_SPEC_FILE

    path = Path(args.spec_file) if args.spec_file else DEFAULT_SPEC_FILE
    # The flags first: a bad --node or --hostname is reported even where a file exists, so
    # the operator fixes the command once, not after moving the file.
    nodes = [parse_node(text) for text in args.node]
    text = starter_spec(args.provider, args.hostname, nodes, path.parent.resolve())
    if path.exists():
        raise UsageError(
            f"{path} already exists; init never overwrites a spec: remove it first, or write "
            "another file with -f FILE"
        )
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} is not a folder; create it first or pick another -f FILE")
    try:
        # "x": a file that appeared since the check above is still not overwritten.
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise UsageError(f"{path} already exists; init never overwrites a spec") from None
    if args.json:
        print_json({"ok": True, "file": str(path), "provider": args.provider})
    else:
        from rke2ha.invocation import command

        check = command("validate", "-f", path)
        print(f"wrote {path} (provider {args.provider}); check it with: {check}")
    return EXIT_OK
