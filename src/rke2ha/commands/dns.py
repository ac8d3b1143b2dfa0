"""`rke2ha dns serve|publish|unpublish|check`: the DNS record for the Rancher hostname.

The DNS library and the spec model load inside the handlers, keeping `rke2ha --help` fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json, spec_from_args
from rke2ha.errors import EXIT_INVALID, EXIT_OK, UsageError


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port 1-65535")
    return int(text)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dns = subparsers.add_parser(
        "dns",
        help="serve, publish or check the DNS record of the Rancher hostname",
        description="The Rancher hostname's DNS record: the built-in authoritative server, "
        "publishing into RFC 2136 / Route 53 (never over a record rke2ha does not own), "
        "and checking what resolvers see.",
    )
    commands = dns.add_subparsers(dest="dns_command", metavar="SUBCOMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the built-in authoritative DNS server for dns.zone",
        description="Answer for dns.zone over UDP and TCP: SOA, NS, the hostname's A/AAAA "
        "(the load balancer addresses; with several, only healthy ones) or CNAME, and the "
        "ownership TXT. Never a resolver: other names are REFUSED. SIGHUP re-reads the "
        "spec; SIGTERM stops.",
    )
    add_spec_argument(serve)
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to listen on (default: dns.builtin.listen, else 0.0.0.0:53); "
        "port 0 picks a free one",
    )
    serve.add_argument(
        "--health-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="load balancer port the health probe (GET of the ingress health path) goes "
        "through when there are several addresses (default: 80; at layer 7 443, over TLS)",
    )
    serve.add_argument(
        "--no-answer-cache",
        dest="answer_cache",
        action="store_false",
        help="build every UDP answer afresh instead of reusing the bytes of an identical "
        "earlier query (for measurement and debugging)",
    )
    serve.set_defaults(handler=_serve)

    for name, what in (("publish", "create or update"), ("unpublish", "remove")):
        sub = commands.add_parser(
            name,
            help=f"{what} the record with dns.provider (rfc2136, route53, manual)",
            description=f"{what.capitalize()} the hostname's record and its ownership TXT "
            "(_rke2ha.<hostname>). Records rke2ha did not create are left untouched and "
            "reported (exit 1).",
        )
        add_spec_argument(sub)
        if name == "publish":
            sub.add_argument(
                "--adopt",
                action="store_true",
                help="take over an existing record that rke2ha did not create",
            )
        add_json_argument(sub)
        sub.set_defaults(handler=_publish if name == "publish" else _unpublish)

    check = commands.add_parser(
        "check",
        help="check that the hostname resolves to the load balancer with the expected type",
        description="Ask one DNS server for the hostname and compare the answer with the "
        "record the spec describes (A to the load balancer address, or CNAME to its "
        "hostname). Exit 0 when it matches, 1 when it does not or nothing answers, 2 on "
        "bad flags or an unreadable spec.",
    )
    add_spec_argument(check)
    check.add_argument(
        "--server",
        "--dns-server",
        dest="server",
        metavar="HOST[:PORT]",
        help="DNS server to ask: an IP address, [IPv6]:PORT, or a name resolved once by "
        "this machine (default: the built-in server for provider builtin, "
        "else the system resolver)",
    )
    add_json_argument(check)
    check.set_defaults(handler=_check)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from rke2ha.dns.hostport import split_host_port
    from rke2ha.dns.server import DnsServer, Listen, run

    spec = spec_from_args(args)
    if args.listen is not None and not args.listen.strip():
        raise UsageError("--listen is empty; give HOST:PORT (e.g. 127.0.0.1:5353) or leave it out")
    listen_text = args.listen or spec.dns.builtin.listen or "0.0.0.0:53"
    try:
        host, port = split_host_port(listen_text, 53, lowest=0)
    except ValueError as err:
        raise UsageError(f"--listen / dns.builtin.listen: {err}") from None
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="rke2ha dns: %(message)s", force=True
    )
    path = Path(args.spec_file) if args.spec_file else None
    server = DnsServer(
        spec, Listen(host, port), path, health_port=args.health_port, cache=args.answer_cache
    )
    run(server)
    return EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    return _run_publish(args, remove=False)


def _unpublish(args: argparse.Namespace) -> int:
    return _run_publish(args, remove=True)


def _run_publish(args: argparse.Namespace, *, remove: bool) -> int:
    from rke2ha.dns.manual import ManualPublisher, instructions
    from rke2ha.dns.providers import publisher_for
    from rke2ha.dns.publish import NotOwnedError, publish, unpublish

    spec = spec_from_args(args)
    publisher, desired = publisher_for(spec)
    if isinstance(publisher, ManualPublisher):
        lines = instructions(desired, remove=remove)
        if args.json:
            print_json(
                {
                    "provider": "manual",
                    "action": "delete" if remove else "create",
                    "changed": False,
                    "records": [r.as_dict() for r in desired.all],
                    "instructions": lines,
                }
            )
        else:
            print("\n".join(lines))
        return EXIT_OK
    try:
        if remove:
            outcome = unpublish(publisher, desired, spec.name)
        else:
            outcome = publish(publisher, desired, spec.name, getattr(args, "adopt", False))
    except NotOwnedError as err:
        if not args.json:
            raise
        print_json(
            {
                "provider": publisher.provider,
                "hostname": desired.hostname,
                "action": "refused",
                "changed": False,
                "ownership": str(err.ownership),
                "reason": str(err),
                "observed": err.observed.as_dict(),
            }
        )
        return EXIT_INVALID
    if args.json:
        print_json(outcome.as_dict())
        return EXIT_OK
    plan = outcome.plan
    verb = {"create": "created", "update": "updated", "adopt": "adopted", "delete": "deleted"}
    if outcome.applied:
        print(f"{verb[str(plan.action)]} {desired.hostname} via {outcome.provider}:")
        shown = desired.all if not remove else (*plan.observed.address, desired.owner)
        for record in shown:
            for line in record.zone_lines():
                print(f"  {line}")
    else:
        print(f"{desired.hostname}: {plan.reason}; nothing changed ({outcome.provider})")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from rke2ha.dns.resolve_check import check

    result = check(spec_from_args(args), args.server)
    if args.json:
        print_json(result.as_dict())
    else:
        mark = "ok  " if result.ok else "FAIL"
        got = result.answer.cname or ", ".join(result.answer.addresses) or result.answer.rcode
        print(f"{mark} {result.hostname} {result.expected_type} -> {got} (via {result.server})")
        for problem in result.problems:
            print(f"     {problem}")
    return EXIT_OK if result.ok else EXIT_INVALID
