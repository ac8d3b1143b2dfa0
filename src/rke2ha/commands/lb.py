"""`rke2ha lb serve`: the built-in load balancer (layer 4 or 7), from the spec or from flags.

The load balancer (aiohttp, the workers) and the spec model load inside the handler,
keeping `rke2ha --help` fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, cast

from rke2ha.commands.common import add_spec_argument, port_offset, spec_from_args
from rke2ha.durations import parse_duration
from rke2ha.errors import UsageError

if TYPE_CHECKING:
    from rke2ha.lb.config import LbConfig
    from rke2ha.spec import Spec


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0 (e.g. 500ms, 1s)")
    return seconds


def _check_access_log(target: str | None) -> None:
    """Fail before serving, not in a worker, when the access log file cannot be opened."""
    if target is None or target == "-":
        return
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise UsageError(
            f"--access-log {target!r}: cannot open it for appending: {err.strerror or err}; "
            "give a writable file, '-' (stdout) or 'off'"
        ) from None


class _Once(argparse.Action):
    """A flag that may be given once: a second `--listen` would silently replace the first."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice; ad hoc mode serves one frontend")
        setattr(namespace, self.dest, values)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


# More processes than this only compete for the CPUs the data plane already saturates; and
# each one is a Python interpreter (~30 MB) that must start before the first is served.
WORKERS_PER_CPU = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as `taskset`/cgroups set it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _workers(text: str) -> int:
    count = _positive(text)
    cpus = usable_cpus()
    if count > WORKERS_PER_CPU * cpus:
        raise argparse.ArgumentTypeError(
            f"{text} is more than {WORKERS_PER_CPU} per CPU ({cpus} usable here, so at most "
            f"{WORKERS_PER_CPU * cpus}); more processes only compete for the same CPUs"
        )
    return count


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lb = subparsers.add_parser(
        "lb",
        help="the built-in load balancer; drain/enable a node on any engine",
        description="The built-in load balancer: `rke2ha lb serve -f FILE` runs the spec's, "
        "`rke2ha lb serve --listen HOST:PORT --backend HOST:PORT ...` an ad hoc one. "
        "`rke2ha lb drain|enable NODE -f FILE` takes a node out for maintenance and back "
        "(built-in or HAProxy), without a reload.",
    )
    lb_sub = lb.add_subparsers(dest="lb_command", metavar="SUBCOMMAND")
    # The defaults shown are the spec model's: the config takes them from there too.
    from rke2ha.spec import Health, LoadBalancer

    spec_lb, health = LoadBalancer(), Health()
    serve_p = lb_sub.add_parser(
        "serve",
        help="serve the load balancer, layer 4 or 7 (from the spec with -f, or ad hoc)",
        description=(
            "Load balancer for the RKE2 servers. With -f: a frontend for every "
            "load_balancer.ports entry on load_balancer.address, to the same port on every "
            "node, with RKE2/Rancher-aware checks; at load_balancer.layer 7, 443 ends TLS and "
            "proxies HTTP to the nodes' port 80 (6443 and 9345 stay layer 4). Ad hoc: one "
            "--listen to the --backends; add --layer 7 --cert --key --hostname to end TLS. "
            "SIGHUP re-reads the spec (and certificates); SIGTERM stops accepting and drains."
        ),
    )
    add_spec_argument(serve_p)
    serve_p.add_argument(
        "--listen", metavar="HOST:PORT", action=_Once, help="ad hoc: the frontend address"
    )
    serve_p.add_argument(
        "--backend",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="ad hoc: a backend (repeat the flag for each one)",
    )
    serve_p.add_argument(
        "--health",
        default=None,
        metavar="CHECK",
        help="ad hoc: tcp | http:PATH[@PORT] | https:PATH[@PORT] (default tcp)",
    )
    serve_p.add_argument("--host-header", metavar="NAME", help="ad hoc: Host header of checks")
    serve_p.add_argument(
        "--balance",
        choices=["leastconn", "roundrobin"],
        default=None,
        help=f"ad hoc: how backends are picked (default {spec_lb.balance})",
    )
    serve_p.add_argument(
        "--admin",
        metavar="HOST:PORT",
        default=None,
        help=f"admin endpoint (default: the spec's, or {spec_lb.admin}); 'off' to disable",
    )
    serve_p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help=f"processes sharing the listeners (SO_REUSEPORT; default 1, at most "
        f"{WORKERS_PER_CPU} per usable CPU)",
    )
    serve_p.add_argument(
        "--port-offset",
        type=port_offset,
        default=0,
        metavar="N",
        help="add N to every frontend, backend and check port (run the lab without root)",
    )
    serve_p.add_argument(
        "--interval",
        type=_positive_duration,
        default=None,
        metavar="DURATION",
        help=f"ad hoc: time between checks (default {health.interval:g}s)",
    )
    serve_p.add_argument(
        "--timeout",
        type=_positive_duration,
        default=None,
        metavar="DURATION",
        help=f"ad hoc: check timeout (default {health.timeout:g}s)",
    )
    serve_p.add_argument(
        "--rise",
        type=_positive,
        default=None,
        metavar="N",
        help=f"ad hoc: passed checks to mark a backend up (default {health.rise})",
    )
    serve_p.add_argument(
        "--fall",
        type=_positive,
        default=None,
        metavar="N",
        help=f"ad hoc: failed checks to mark a backend down (default {health.fall})",
    )
    serve_p.add_argument(
        "--drain-timeout",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="on SIGTERM, wait this long for open connections "
        f"(default: the spec's, or {spec_lb.drain_timeout:g}s)",
    )
    serve_p.add_argument(
        "--idle-timeout",
        type=_positive_duration,
        default=None,
        metavar="DURATION",
        help=f"ad hoc: close a connection idle this long (default {spec_lb.idle_timeout:g}s)",
    )
    serve_p.add_argument(
        "--connect-timeout",
        type=_positive_duration,
        default=None,
        metavar="DURATION",
        help="ad hoc: give up a backend connect after this long "
        f"(default {spec_lb.connect_timeout:g}s)",
    )
    serve_p.add_argument(
        "--max-connections",
        type=_positive,
        default=None,
        metavar="N",
        help="ad hoc: beyond N open connections stop accepting (clients wait in the backlog; "
        f"default {spec_lb.max_connections})",
    )
    serve_p.add_argument(
        "--retries",
        type=int,
        choices=range(0, 11),
        default=None,
        metavar="N",
        help="ad hoc: other backends tried after a refused or timed-out connect "
        f"(0-10, default {spec_lb.retries})",
    )
    serve_p.add_argument("--send-proxy", action="store_true", help="ad hoc: PROXY v2 to backends")
    serve_p.add_argument(
        "--access-log",
        default="-",
        metavar="FILE",
        help="a JSON line per connection (layer 4) or request (layer 7): '-' stdout "
        "(default), a file, or 'off' (also 'none')",
    )
    serve_p.add_argument(
        "--relay", choices=["auto", "splice", "copy"], default="auto", help=argparse.SUPPRESS
    )
    serve_p.add_argument("-v", "--verbose", action="store_true", help="log every connect failure")
    from rke2ha.commands.lb_l7 import add_l7_arguments

    add_l7_arguments(serve_p)
    serve_p.set_defaults(handler=handle_serve)
    from rke2ha.commands import lb_maint

    lb_maint.register(lb_sub)
    lb.set_defaults(handler=lambda _args: _no_subcommand(lb))


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# Flags whose value, when given, goes to `config.from_flags` as is (name = keyword).
_AD_HOC_FLAGS = (
    "interval",
    "timeout",
    "rise",
    "fall",
    "idle_timeout",
    "connect_timeout",
    "max_connections",
    "retries",
    "drain_timeout",
)


def build_config(args: argparse.Namespace, spec: Spec | None = None) -> LbConfig:
    """The one LbConfig the flags (and the spec of -f) describe; UsageError for
    contradictory flags. `spec` is the spec already read, if any."""
    from rke2ha.commands.lb_l7 import check_key_mode, l7_flags, wants_layer7
    from rke2ha.lb.accesslog import log_target
    from rke2ha.lb.config import check_privileges, from_flags

    access_log = log_target(args.access_log)
    _check_access_log(access_log)
    relay = cast(Literal["auto", "splice", "copy"], args.relay)
    if args.listen or args.backend:
        if args.spec_file:
            raise UsageError("give either -f FILE or --listen/--backend, not both")
        layer7 = wants_layer7(args, None)
        if not args.listen:
            needs = "--layer 7 needs" if layer7 else "--backend needs"
            raise UsageError(f"{needs} --listen HOST:PORT (the frontend address)")
        if args.port_offset:
            raise UsageError(
                "--port-offset applies to -f FILE; write the ports in --listen/--backend"
            )
        backends = [text.strip() for text in args.backend or []]
        twice = sorted({text for text in backends if backends.count(text) > 1})
        if twice:
            raise UsageError(
                f"--backend {', '.join(twice)} given more than once; give each node once "
                "(a node listed twice would get twice the connections)"
            )
        if layer7:
            check_key_mode(args.key)
        options: dict[str, Any] = {
            name: getattr(args, name) for name in _AD_HOC_FLAGS if getattr(args, name) is not None
        }
        if args.balance:
            options["balance"] = args.balance
        if args.admin is not None:
            options["admin"] = None if args.admin == "off" else args.admin
        config = from_flags(
            listen=args.listen,
            backends=args.backend,
            **({"health": args.health} if args.health else {}),
            host_header=args.host_header,
            workers=args.workers,
            send_proxy=args.send_proxy,
            access_log=access_log,
            relay=relay,
            l7=l7_flags(args) if layer7 else None,
            **options,
        )
    else:
        spec = spec if spec is not None else spec_from_args(args)
        wants_layer7(args, spec)
        config = _from_spec(args, spec, access_log, relay)
    check_privileges(config)
    return config


def _from_spec(
    args: argparse.Namespace,
    spec: Spec,
    access_log: str | None,
    relay: Literal["auto", "splice", "copy"],
) -> LbConfig:
    from rke2ha.lb.config import ADMIN_FLAG, from_spec, parse_hostport
    from rke2ha.lb.spec_errors import warn_spec_errors

    config = from_spec(spec, port_offset=args.port_offset, workers=args.workers)
    warn_spec_errors(spec)
    changes: dict[str, object] = {"access_log": access_log, "relay": relay}
    if args.admin is not None:
        changes["admin"] = None if args.admin == "off" else parse_hostport(args.admin, "--admin")
        changes["admin_from"] = ADMIN_FLAG
    if args.drain_timeout is not None:
        changes["drain_timeout"] = args.drain_timeout
    return replace(config, **changes)  # type: ignore[arg-type]


def handle_serve(args: argparse.Namespace) -> int:
    import logging

    from rke2ha.lb.accesslog import log_target
    from rke2ha.lb.workers import serve

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s rke2ha-lb[%(process)d] %(levelname)s %(message)s",
    )
    if not args.verbose:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
    config = build_config(args)
    reload_source: Callable[[], LbConfig] | None = None
    if not args.listen:
        # SIGHUP reads the spec again (and the certificate it names), at either layer.
        def reload_source() -> LbConfig:
            spec = spec_from_args(args)
            from rke2ha.commands.lb_l7 import wants_layer7

            wants_layer7(args, spec)
            return _from_spec(args, spec, log_target(args.access_log), args.relay)

    elif config.l7 is not None:
        # From flags, SIGHUP re-reads the certificate files (the flags cannot change).
        def reload_source() -> LbConfig:
            return config

    return serve(config, reload_source)
