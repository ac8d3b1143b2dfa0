"""`rke2ha lab ...`: run and poke the lab's pieces one at a time.

`rke2ha lab node` runs one node emulator in the foreground; the lab orchestration spawns
one such process per node. Heavy imports (aiohttp, cryptography) happen inside the
handler, so `rke2ha --help` and other commands stay fast. `python -m rke2ha.commands.lab`
runs the same subcommands without the rest of the CLI (see `main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rke2ha.commands.common import add_spec_argument, spec_from_args
from rke2ha.errors import Rke2haError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="run or poke the pieces of the local lab (node emulators)",
        description="Run or poke the pieces of the local lab (provider: lab).",
    )
    lab_commands = parser.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    node = lab_commands.add_parser(
        "node",
        help="run one node emulator in the foreground (spawned by the lab, one per node)",
        description=(
            "Run one RKE2 server node emulator on the node's loopback address: ingress on "
            "80/443, kube-apiserver on 6443, supervisor on 9345 (each + the port offset). "
            "Writes one JSON line per event to stdout. SIGUSR1: start joining (6443 not "
            "ready, 80/443 closed); SIGUSR2: joined (ready); SIGTERM: exit."
        ),
    )
    add_spec_argument(node)
    node.add_argument("--name", required=True, metavar="NODE", help="the node's name in the spec")
    node.add_argument(
        "--port-offset",
        type=int,
        default=None,
        metavar="N",
        help="added to every real port (default: 0 as root, else lab.port_offset)",
    )
    node.add_argument(
        "--state",
        choices=("ready", "joining"),
        default="ready",
        help="start joined (ready, default) or joining (9345 up, 6443 not ready)",
    )
    node.add_argument(
        "--ca-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the lab CA and certificates (default: .rke2ha/lab/pki beside the spec); "
        "created when missing, reused otherwise",
    )
    node.set_defaults(handler=_node)


def _node(args: argparse.Namespace) -> int:
    from rke2ha.lab.node_server import run_node
    from rke2ha.lab.node_setup import setup_node
    from rke2ha.lab.node_states import NodeState

    spec = spec_from_args(args)
    setup = setup_node(spec, args.name, offset=args.port_offset, pki_dir=args.ca_dir)
    return run_node(setup, NodeState(args.state))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rke2ha.commands.lab node ...`: the lab's spawn path.

    Same arguments, output and exit codes as `rke2ha lab ...`, without importing every
    other command module first: a node emulator starts faster, and a broken unrelated
    command cannot stop the lab from starting.
    """
    parser = argparse.ArgumentParser(prog="rke2ha")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args))
    except Rke2haError as err:
        print(f"rke2ha lab: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
