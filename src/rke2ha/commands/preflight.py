"""`rke2ha preflight`: reach every node over SSH and check it can hold an HA RKE2 server;
`gate` runs the same before `plan`/`up` of provider existing when the spec has `ssh:`.

asyncssh, the spec model and rich load inside the handlers, keeping `rke2ha --help` fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json, spec_from_args
from rke2ha.errors import EXIT_INVALID, EXIT_OK, InvalidError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from rke2ha.spec import Spec


def add_host_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="record the host key of a machine known_hosts does not list yet (a changed key "
        "is refused all the same)",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "preflight",
        help="check over SSH that the nodes can hold an HA RKE2 cluster (reads only)",
        description="Log in to every node of the spec over SSH (the ssh: block) and check "
        "what an HA RKE2 server needs: systemd, architecture, CPU, memory, free ports, "
        "firewalld, NetworkManager, nm-cloud-setup, SELinux, AppArmor, time, swap, sudo, a "
        "default route, unique hostnames; then between the servers: TCP 9345 6443 2379 "
        "2380 10250 and UDP 8472, clock skew, name resolution. Changes nothing. Exit 0 "
        "when no check failed (warnings allowed), 1 with any error, 2 on bad flags or a "
        "spec without ssh:.",
    )
    add_spec_argument(parser)
    add_json_argument(parser)
    parser.add_argument("--node", metavar="NAME", help="check this node only (no pair probes)")
    add_host_key_argument(parser)
    parser.set_defaults(handler=handle)


def _require_ssh(spec: Spec) -> None:
    if spec.ssh is None:
        raise UsageError(
            "the spec has no ssh: block, so rke2ha cannot reach the nodes; add one "
            "(docs/spec-reference.md, ssh)"
        )


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rke2ha.preflight import report, runner

    spec = spec_from_args(args)
    _require_ssh(spec)
    result = runner.run_sync(spec, args.node, args.accept_new_host_keys)
    if args.json:
        print_json(report.to_json(result))
    else:
        console = Console(file=sys.stdout, highlight=False)
        console.soft_wrap = not console.is_terminal
        report.print_text(result, console, f"rke2ha preflight: {spec.name}")
    return EXIT_OK if result.ok else EXIT_INVALID


def gate(spec: Spec, args: argparse.Namespace, console: Console) -> None:
    """Before `plan`/`up` of provider existing with `ssh:`: run the pre-flight and stop
    (InvalidError, exit 1) on any error, before anything is read or changed."""
    if spec.provider != "existing" or spec.ssh is None:
        return
    from rke2ha.preflight import report, runner

    result = runner.run_sync(spec, None, getattr(args, "accept_new_host_keys", False))
    if result.ok:
        hosts = len(spec.load_balancer.hosts)
        also = f" and {hosts} load balancer host(s)" if hosts else ""
        console.print(f"pre-flight: {len(result.nodes)} nodes{also} ready ({result.seconds:.1f}s)")
        return
    report.print_text(result, console, f"rke2ha preflight: {spec.name}")
    errors = sum(1 for f in result.findings if f.severity == "error")
    raise InvalidError(
        f"pre-flight found {errors} error(s) on the nodes; nothing was changed. Fix them "
        "(rke2ha preflight shows the same) and run again"
    )
