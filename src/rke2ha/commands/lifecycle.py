"""`rke2ha plan`, `rke2ha up`, `rke2ha down`: parse, call `providers.lifecycle`, print.

`plan --detailed-exitcode` follows Terraform: 0 no changes, 1 error, 2 changes.
`up` and `down` show the plan and ask before changing anything unless `--yes`; without a
terminal to ask on they refuse instead of guessing.

The providers (boto3 for aws), the spec model and rich load inside the handlers, keeping
`rke2ha --help` fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json, spec_from_args
from rke2ha.commands.preflight import add_host_key_argument, gate
from rke2ha.commands.provider_flags import DOWN_FLAGS, UP_FLAGS, refuse_foreign_flags
from rke2ha.errors import EXIT_INVALID, Rke2haError, UsageError
from rke2ha.invocation import spec_command
from rke2ha.providers.lab import flags as lab_flags

if TYPE_CHECKING:
    from rich.console import Console

    from rke2ha.plan import Plan
    from rke2ha.providers import lifecycle

EXIT_CHANGES = 2
DEFAULT_WAIT = 1800.0
STYLE = {"+": "green", "~": "yellow", "-": "red", "-/+": "magenta"}


def register(subparsers: Any) -> None:
    plan = subparsers.add_parser(
        "plan",
        help="show what `up` would create, change or destroy (reads only)",
        description="Read what exists for the spec's provider (lab processes, existing "
        "hosts and DNS, or AWS) and show what `up` would create, change or destroy; nothing "
        "is changed. Exit 0 on success, 1 when the spec or the provider reports a problem, "
        "2 on bad flags, an unreadable spec or missing credentials.",
    )
    add_spec_argument(plan)
    add_json_argument(plan)
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing would change, 2 when something would, 1 on error",
    )
    plan.add_argument("--force-unlock", action="store_true", help="break a held state lock")
    add_host_key_argument(plan)
    plan.set_defaults(handler=run_plan)

    up = subparsers.add_parser(
        "up",
        help="create or repair the infrastructure of the spec",
        description="Show the plan, ask (or take --yes), then create or repair what the spec "
        "describes with its provider (lab | existing | aws). Safe to rerun: what already "
        "matches is left alone. Exit 0 on success, 1 on a failed step, 2 on bad flags, an "
        "unreadable spec or missing credentials.",
    )
    add_spec_argument(up)
    add_json_argument(up)
    up.add_argument("--yes", action="store_true", help="apply without asking")
    up.add_argument(
        "--wait",
        action="store_true",
        help="after applying, wait (bounded) until the load balancer reports every target "
        "healthy, then run `check` against the assigned addresses",
    )
    up.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"give up waiting after this long (default {DEFAULT_WAIT:g})",
    )
    up.add_argument(
        "--no-check",
        action="store_true",
        help="do not run `check` after applying (it runs with --wait, and once Rancher "
        "answers /ping with rancher.install)",
    )
    up.add_argument("--force-unlock", action="store_true", help="break a held state lock")
    add_host_key_argument(up)  # provider existing with ssh: runs the pre-flight first
    # Each group's flags are refused (exit 2) with another provider (`provider_flags`).
    existing = up.add_argument_group("provider existing")
    existing.add_argument(
        "--merge-kubeconfig",
        action="store_true",
        help="with rke2.install online or airgap: also merge the cluster's context into "
        "~/.kube/config (other contexts are kept)",
    )
    aws = up.add_argument_group("provider aws")
    aws.add_argument(
        "--adopt-dns",
        action="store_true",
        help="replace a record at the hostname that rke2ha did not make with the NLB alias",
    )
    lab_flags.add_up_arguments(up)  # provider lab: --detach, --port-offset, --replace
    up.set_defaults(handler=run_up)

    down = subparsers.add_parser(
        "down",
        help="destroy what `up` made (only resources tagged as this cluster's)",
        description="Show what would be destroyed, ask (or take --yes), then remove what "
        "`up` made for this spec, and nothing else: resources rke2ha did not create or that "
        "belong to another cluster are left alone. Exit codes as for `up`.",
    )
    add_spec_argument(down)
    add_json_argument(down)
    down.add_argument("--yes", action="store_true", help="destroy without asking")
    down.add_argument("--force-unlock", action="store_true", help="break a held state lock")
    down.add_argument_group("provider existing").add_argument(
        "--uninstall-rke2",
        action="store_true",
        help="also run rke2-uninstall.sh on the nodes where rke2ha installed RKE2 (deletes "
        "the cluster's data); plain down never touches RKE2",
    )
    lab_flags.add_down_arguments(down)  # provider lab: --replace
    down.set_defaults(handler=run_down)


def _console(args: argparse.Namespace) -> Console:
    from rke2ha.terminal import make_console

    # With --json, stdout is for the document alone: people's output goes to stderr.
    return make_console(stderr=bool(args.json))


def print_plan(plan: Plan, console: Console) -> None:
    from rich.markup import escape

    for line in plan.lines():
        symbol = line.split()[0] if line.strip() else ""
        style = STYLE.get(symbol)
        console.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line))
    for note in plan.notes:
        console.print(f"[cyan]note:[/cyan] {escape(note)}")
    console.print(f"[bold]{escape(plan.summary)}[/bold]")


def _confirm(args: argparse.Namespace, console: Console, verb: str) -> Any:
    def confirm(plan: Plan) -> bool:
        print_plan(plan, console)
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"{verb} needs confirmation: rerun with --yes (no terminal to ask on)")
        answer = console.input(f"Do you want to {verb}? Only 'yes' will be accepted: ")
        return answer.strip() == "yes"

    return confirm


def _notices(console: Console, notices: list[str]) -> None:
    from rich.markup import escape

    for notice in notices:
        console.print(f"[yellow]notice:[/yellow] {escape(notice)}")


def run_plan(args: argparse.Namespace) -> int:
    from rke2ha.providers import lifecycle
    from rke2ha.providers.base import ProviderOptions

    console = _console(args)
    try:
        from rke2ha.rules.gate import refuse_invalid_spec

        refuse_invalid_spec(args.spec_file, "plan")
        spec = spec_from_args(args)
        gate(spec, args, console)
        result = lifecycle.plan(spec, ProviderOptions(force_unlock=args.force_unlock))
    except Rke2haError as err:
        if not args.detailed_exitcode:
            raise
        # Exit 2 means "changes" here, so every error is 1, as Terraform does.
        print(f"rke2ha plan: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    _notices(console, result.lock_notices)
    if args.json:
        print_json(result.plan.to_json())
    else:
        print_plan(result.plan, console)
    if args.detailed_exitcode and result.plan.has_changes:
        return EXIT_CHANGES
    return 0


def run_up(args: argparse.Namespace) -> int:
    from rke2ha.rules.gate import refuse_invalid_spec

    refuse_invalid_spec(args.spec_file, "up")
    lab_spec = spec_from_args(args)
    refuse_foreign_flags(args, lab_spec, UP_FLAGS)
    if lab_spec.provider == "lab":  # local processes only: no confirmation; --detach
        return lab_flags.run_up(args, lab_spec)
    from rich.markup import escape

    from rke2ha.providers import lifecycle
    from rke2ha.providers.base import ProviderOptions
    from rke2ha.providers.progress import RichReporter

    if args.json and not args.yes:
        raise UsageError("up --json needs --yes (there is no one to ask)")
    if args.wait_timeout <= 0:
        raise UsageError("--wait-timeout must be a positive number of seconds")
    console = _console(args)
    spec = spec_from_args(args)
    gate(spec, args, console)
    result = lifecycle.up(
        spec,
        ProviderOptions(
            force_unlock=args.force_unlock,
            adopt_dns=args.adopt_dns,
            merge_kubeconfig=args.merge_kubeconfig,
        ),
        _confirm(args, console, "apply these changes"),
        RichReporter(console),
        wait_timeout=args.wait_timeout if args.wait else None,
        run_check=not args.no_check,
    )
    _notices(console, result.lock_notices)
    if not result.plan.has_changes:
        print_plan(result.plan, console)
    elif result.outcome is None:
        console.print("Nothing changed.")
        return 0
    applied = result.outcome.done if result.outcome else []
    steps = result.outcome.next_steps if result.outcome else []
    records = result.outcome.dns_instructions if result.outcome else []
    if applied:
        console.print(f"[bold green]Applied {len(applied)} change(s).[/bold green]")
    for line in result.ready:
        console.print(f"ready: {escape(line)}")
    for step in steps:
        console.print(f"next: {escape(step)}")
    print_dns_instructions(records, console)
    if result.check is not None and not args.json:
        from rke2ha.check.report import print_text

        print_text(
            result.check.results, result.check.seconds, console, f"rke2ha check: {spec.hostname}"
        )
    if args.json:
        print_json(_document(result, applied, steps, records))
    if result.check is not None and not result.check.ok:
        failed = [r.id for r in result.check.results if r.status == "fail"]
        print(
            f"rke2ha up: error: check failed: {', '.join(failed) or 'the drill'}; fix what each "
            f"names, then run `{spec_command(spec, 'check')}`",
            file=sys.stderr,
        )
        return EXIT_INVALID
    return 0


def run_down(args: argparse.Namespace) -> int:
    lab_spec = spec_from_args(args)
    refuse_foreign_flags(args, lab_spec, DOWN_FLAGS)
    if lab_spec.provider == "lab":  # stops the lab's own processes only: no confirmation
        return lab_flags.run_down(args, lab_spec)
    from rke2ha.providers import lifecycle
    from rke2ha.providers.base import ProviderOptions
    from rke2ha.providers.progress import RichReporter

    if args.json and not args.yes:
        raise UsageError("down --json needs --yes (there is no one to ask)")
    console = _console(args)
    spec = spec_from_args(args)
    result = lifecycle.down(
        spec,
        ProviderOptions(force_unlock=args.force_unlock, uninstall_rke2=args.uninstall_rke2),
        _confirm(args, console, "destroy these resources"),
        RichReporter(console),
    )
    _notices(console, result.lock_notices)
    if not result.plan.has_changes:
        console.print("Nothing to destroy: no resources tagged as this cluster's were found.")
    elif result.outcome is None:
        console.print("Nothing destroyed.")
        return 0
    applied = result.outcome.done if result.outcome else []
    records = result.outcome.dns_instructions if result.outcome else []
    if applied:
        console.print(f"[bold]Destroyed {len(applied)} resource(s).[/bold]")
    print_dns_instructions(records, console)
    if args.json:
        print_json(_document(result, applied, [], records))
    return 0


def print_dns_instructions(lines: list[str], console: Console) -> None:
    """Zone-file lines to paste, verbatim: no prefix, no markup, never wrapped."""
    if not lines:
        return
    console.print("DNS records (dns.provider manual: make these changes in your DNS):")
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


def _document(
    result: lifecycle.Result, applied: list[Any], steps: list[str], records: list[str]
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "plan": result.plan.to_json(),
        "applied": [c.to_json() for c in applied],
        "ready": result.ready,
        "next_steps": steps,
        "dns_instructions": records,
    }
    if result.check is not None:
        from rke2ha.check.report import to_json

        document["check"] = to_json(result.check.results, result.check.seconds)
    return document
