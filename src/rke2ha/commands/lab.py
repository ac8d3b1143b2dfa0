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

from rke2ha.commands.common import (
    add_json_argument,
    add_spec_argument,
    print_json,
    spec_from_args,
)
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
    node.add_argument(
        "--rancher",
        choices=("installed", "absent"),
        default="installed",
        help="whether Rancher's Ingress exists: installed (default) gives the hostname its "
        "own ingress server (308 to https on 80, Rancher on 443); absent leaves every Host "
        "to the catch-all server, as before `helm install rancher`",
    )
    node.add_argument(
        "--ingress-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a rendered ingress HelmChartConfig (rancher/ingress-helmchartconfig.yaml): "
        "use-forwarded-headers / use-proxy-protocol as RKE2's ingress would read them "
        "(default: RKE2's defaults, nothing trusted)",
    )
    node.set_defaults(handler=_node)
    _register_faults(lab_commands)


def _node(args: argparse.Namespace) -> int:
    from rke2ha.lab.node_server import run_node
    from rke2ha.lab.node_setup import setup_node
    from rke2ha.lab.node_states import NodeState

    spec = spec_from_args(args)
    setup = setup_node(
        spec,
        args.name,
        offset=args.port_offset,
        pki_dir=args.ca_dir,
        rancher_installed=args.rancher == "installed",
        ingress_config=args.ingress_config,
    )
    return run_node(setup, NodeState(args.state))


# ---- fault injection and status of a running lab (rke2ha.providers.lab) ----------------------

_FAULTS = {
    "kill": "kill the node's process (SIGKILL): every port refuses connections",
    "freeze": "freeze the node (SIGSTOP): connections are accepted, nothing answers",
    "thaw": "thaw a frozen node (SIGCONT)",
    "restart": "stop the node and start it again, ready",
    "join": "make the node (re)join: 9345 answers, 6443 not ready, 80/443 closed "
    "(--done: joined, ready)",
}


def _register_faults(lab_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in _FAULTS.items():
        fault = lab_commands.add_parser(name, help=text, description=text[0].upper() + text[1:])
        add_spec_argument(fault)
        add_json_argument(fault)
        fault.add_argument("node", metavar="NODE", help="the node's name in the spec")
        if name == "join":
            fault.add_argument(
                "--done", action="store_true", help="finish joining: the node becomes ready"
            )
        fault.set_defaults(handler=_fault, fault=name)
    status = lab_commands.add_parser(
        "status",
        help="show each lab process: pid, ports, state, load balancer rotation",
        description="Show each process of the spec's lab (node emulators, load balancer, DNS "
        "server): pid, ports, state, and whether the load balancer has the node in rotation; "
        "then how to reach the lab. Reads only. Exit 0 when every process runs, 1 when some "
        "or all are down (the command that starts the lab is printed), 2 on bad flags or an "
        "unreadable spec.",
    )
    add_spec_argument(status)
    add_json_argument(status)
    status.set_defaults(handler=_status)


def _fault(args: argparse.Namespace) -> int:
    from rke2ha.providers.lab.faults import LabFaults

    faults = LabFaults(spec_from_args(args))
    if args.fault == "join":
        message = faults.join(args.node, done=args.done)
    else:
        message = getattr(faults, args.fault)(args.node)
    if args.json:
        print_json({"ok": True, "node": args.node, "fault": args.fault, "detail": message})
    else:
        print(message)
    return 0


def _status(args: argparse.Namespace) -> int:
    from rke2ha.providers.lab.console import print_status
    from rke2ha.specfile import DEFAULT_SPEC_FILE

    spec_file = Path(args.spec_file or DEFAULT_SPEC_FILE)
    return print_status(spec_from_args(args), spec_file, as_json=args.json)


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
