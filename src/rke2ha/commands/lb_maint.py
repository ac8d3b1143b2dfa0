"""`rke2ha lb drain NODE` / `rke2ha lb enable NODE`: a node out of rotation and back.

Thin: the spec, then `rke2ha.maintenance_run` (which asks `rke2ha.maintenance` what to send).
"""

from __future__ import annotations

import argparse

from rke2ha.commands.common import (
    add_json_argument,
    add_spec_argument,
    port_offset,
    print_json,
    spec_from_args,
)
from rke2ha.errors import UsageError

HELP = {
    "drain": "take NODE out of every frontend for maintenance: no new connections, open "
    "ones finish; health checks go on but do not bring it back",
    "enable": "put NODE back into rotation after `lb drain` (subject to its health checks)",
}


def register(lb_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for action, text in HELP.items():
        parser = lb_sub.add_parser(
            action,
            help=text.split(":")[0],
            description=f"{text}. Built-in engine: its admin endpoint (load_balancer.admin); "
            "HAProxy: its runtime API (stats socket) on this machine or on every "
            "load_balancer.hosts machine over SSH, no reload. nginx (no runtime API): its "
            "config rendered again with the node marked down, checked by nginx and reloaded, "
            "where it runs (each load_balancer.hosts machine in turn, or here). HAProxy and "
            "nginx keep the drained node in the state file: `up` keeps it out until "
            "`lb enable`.",
        )
        parser.add_argument("node", metavar="NODE", help="a node name from the spec")
        add_spec_argument(parser)
        parser.add_argument(
            "--port-offset",
            type=port_offset,
            default=0,
            metavar="N",
            help="built-in engine: the --port-offset `lb serve` was started with (it moves "
            "the admin endpoint too; default 0)",
        )
        add_json_argument(parser)
        parser.set_defaults(handler=handle, maint_action=action)


def handle(args: argparse.Namespace) -> int:
    from rke2ha.maintenance_run import apply

    spec = spec_from_args(args)
    if args.port_offset and spec.load_balancer.engine != "builtin":
        raise UsageError(
            f"--port-offset is for load_balancer.engine builtin (its admin endpoint); this "
            f"spec has engine {spec.load_balancer.engine}; leave --port-offset out"
        )
    lines = apply(spec, args.node, args.maint_action, args.port_offset)
    if args.json:
        print_json({"node": args.node, "action": args.maint_action, "load_balancers": lines})
        return 0
    for line in lines:
        print(line)
    return 0
