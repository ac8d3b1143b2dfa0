"""`rke2ha check`: verify the live path DNS -> load balancer -> every node -> Rancher.

Thin: parse flags, call `rke2ha.check.session`, print the table or JSON, exit 0/1/2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rke2ha.check import DEFAULT_TIMEOUT
from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json, spec_from_args
from rke2ha.errors import EXIT_INVALID, EXIT_OK, InvalidError, UsageError


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"{text}: give more than 0 and at most 60 seconds")
    return value


def _offset(text: str) -> int:
    if not text.isdigit() or int(text) > 60_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port offset (0-60000)")
    return int(text)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify the live deployment: DNS -> load balancer -> every node -> Rancher",
        description=(
            "Probe the deployment described by the spec: the DNS record, every load "
            "balancer port, every node directly, the HTTP->HTTPS redirect, the certificate, "
            "Rancher's /ping and websocket, the spread over nodes and the registration "
            "address; with two load_balancer.hosts also, over SSH, which host holds the "
            "virtual IP, that the other would take over, and each node's state in each "
            "host's HAProxy. Connections go to the spec's addresses with the hostname as SNI and "
            "Host (like curl --resolve). Exit 0 when no check failed (skips do not pass "
            "either), 1 when one did, 2 on bad flags or unreadable files."
        ),
    )
    add_spec_argument(parser)
    add_json_argument(parser)
    parser.add_argument(
        "--drill",
        action="store_true",
        help="lab only: kill, then freeze one node under a request stream and report failed "
        "requests and the failover time; the node is restored (with --lb: any provider with "
        "two load_balancer.hosts)",
    )
    parser.add_argument("--drill-node", metavar="NAME", help="the node to fail (default: last)")
    parser.add_argument(
        "--lb",
        action="store_true",
        help="with --drill: fail the load balancer pair instead of a node: stop, then freeze "
        "the engine on the host holding the virtual IP (over SSH) under a request stream, "
        "and report how fast the address moved; each fault is undone",
    )
    parser.add_argument(
        "--dns-server",
        metavar="HOST[:PORT]",
        help="DNS server for dns.record: an IP address, [IPv6]:PORT, or a name resolved "
        "once by this machine (default: the built-in server's listen address for "
        "the lab or dns.provider builtin, else the system resolver)",
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        type=Path,
        help="PEM CA bundle to verify the Rancher certificate (default: the lab CA in the "
        "lab, else the system roots)",
    )
    parser.add_argument(
        "--token",
        metavar="FILE",
        type=Path,
        help="bearer token file (mode 0600): 6443 /readyz then shows readiness, and the "
        "Rancher websocket check runs against a real Rancher",
    )
    parser.add_argument(
        "--port-offset",
        metavar="N",
        type=_offset,
        help="added to every spec port (default: the offset the running lab was started "
        "with; else, in the lab, 0 as root and lab.port_offset otherwise; else 0)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"per-probe timeout (default {DEFAULT_TIMEOUT:g}); a frozen peer fails within it",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    # Imported here: probes, websockets and rich load only when `check` runs.
    from rke2ha.check.lbdrill import LbDrillSettings
    from rke2ha.check.report import print_drill, print_lb_drill, print_text, to_json
    from rke2ha.check.session import (
        LB_DRILL_NEEDS_PAIR,
        check_deployment,
        lab_fault_injector,
        lab_not_up,
        with_defaults,
    )
    from rke2ha.check.target import CheckOptions, load_target
    from rke2ha.specfile import DEFAULT_SPEC_FILE
    from rke2ha.terminal import make_console

    spec = spec_from_args(args)
    options = with_defaults(
        spec,
        CheckOptions(
            dns_server=args.dns_server,
            ca_file=args.ca,
            token_file=args.token,
            timeout=args.timeout,
        ),
        args.port_offset,
    )
    if args.drill_node and not args.drill:
        raise UsageError("--drill-node NAME goes with --drill")
    if args.lb and not args.drill:
        raise UsageError("--lb goes with --drill (`rke2ha check --drill --lb -f FILE`)")
    if args.lb and args.drill_node:
        raise UsageError("--drill-node picks a node; --drill --lb fails the load balancer pair")
    if args.lb and len(spec.load_balancer.hosts) != 2:
        raise UsageError(LB_DRILL_NEEDS_PAIR)
    known = [node.name for node in spec.nodes]
    if args.drill_node and args.drill_node not in known:
        # Now, not after every check has passed, so a typo costs no wait.
        raise UsageError(
            f"--drill-node {args.drill_node!r} is not in the spec (nodes: {', '.join(known)})"
        )
    # A stopped lab: one line that says so, not a table of probes that all fail. An
    # explicit --port-offset targets a lab started some other way: probe it.
    not_up = lab_not_up(spec, args.spec_file or DEFAULT_SPEC_FILE)
    if not_up is not None and args.port_offset is None:
        load_target(spec, options)  # bad flags (--ca, --token, --dns-server) still exit 2
        raise InvalidError(not_up)
    lb_drill = LbDrillSettings() if args.lb else None
    node_drill = args.drill and not args.lb
    injector = lab_fault_injector(spec, options.port_offset) if node_drill else None
    run = check_deployment(
        spec, options, injector=injector, drill_node=args.drill_node, lb_drill=lb_drill
    )
    if args.json:
        drill = run.drill.as_dict() if run.drill else None
        if run.lb_drill is not None:
            drill = run.lb_drill.as_dict()
        if run.drill_skipped is not None:
            drill = {"ok": False, "skipped": run.drill_skipped}
        print_json(to_json(run.results, run.seconds, drill))
    else:
        console = make_console(file=sys.stdout)
        print_text(run.results, run.seconds, console, f"rke2ha check: {spec.hostname}")
        if run.drill is not None:
            print_drill(run.drill, console)
        if run.lb_drill is not None:
            print_lb_drill(run.lb_drill, console)
        if run.drill_skipped is not None:
            console.print(f"drill {run.drill_skipped}")
    return EXIT_OK if run.ok else EXIT_INVALID
