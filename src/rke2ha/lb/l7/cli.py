"""Flags of `rke2ha lb serve` that belong to layer 7, and the call that serves them.

The `lb` command module adds these with `add_l7_arguments(parser)` and hands over to
`serve_l7(args)` when `--layer 7` is given (or the spec says `layer: 7`). Kept here so the
layer 7 surface is defined next to the code it drives.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rke2ha.durations import parse_duration
from rke2ha.errors import UsageError

# The load balancer and the spec model load when a command runs, not when `rke2ha --help`
# builds the parser.
if TYPE_CHECKING:
    from rke2ha.lb.config import LbConfig
    from rke2ha.lb.l7.settings import L7Config
    from rke2ha.spec import Spec

HostPort = tuple[str, int]
DEFAULT_ADMIN = ("127.0.0.1", 8404)


def add_l7_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "layer 7 (TLS ends here; Rancher installed with --set tls=external)"
    )
    group.add_argument(
        "--layer",
        type=int,
        choices=(4, 7),
        default=None,
        help="4: TCP passthrough (default); 7: terminate TLS and proxy HTTP to the nodes' port 80",
    )
    group.add_argument("--cert", type=Path, metavar="FILE", help="PEM certificate chain (layer 7)")
    group.add_argument(
        "--key", type=Path, metavar="FILE", help="PEM private key, mode 0600 (layer 7)"
    )
    group.add_argument(
        "--hostname",
        metavar="NAME",
        help="the Rancher hostname: the certificate must cover it; redirects go to it",
    )
    group.add_argument(
        "--redirect-from",
        metavar="HOST:PORT",
        help="also listen here (plain HTTP) and redirect to https://HOSTNAME/...",
    )
    group.add_argument(
        "--redirect-code",
        type=int,
        choices=(301, 308),
        default=None,
        help="status of that redirect (default 308: keeps method and body)",
    )
    group.add_argument(
        "--acme-passthrough",
        action="store_true",
        help="send /.well-known/acme-challenge/ on the redirect port to the nodes",
    )
    group.add_argument(
        "--affinity",
        choices=("none", "cookie"),
        default="none",
        help="cookie: pin each client to one node with an opaque, signed cookie",
    )
    group.add_argument(
        "--http-timeout",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="read/write and websocket idle timeout (default 1800s, Rancher's advice)",
    )
    group.add_argument(
        "--header-timeout",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="a request head must arrive within this, or 408 (default 10s)",
    )


def config_from_args(args: argparse.Namespace) -> L7Config:
    """L7Config from the ad-hoc flags; UsageError naming the flag that is missing or bad."""
    from rke2ha.lb.config import (
        HealthConfig,
        check_not_itself,
        parse_health,
        parse_hostport,
        same_listener,
    )
    from rke2ha.lb.l7.settings import L7Config

    missing = [
        flag
        for flag, value in (
            ("--listen", getattr(args, "listen", None)),
            ("--cert", args.cert),
            ("--key", args.key),
            ("--hostname", args.hostname),
            ("--backend", getattr(args, "backend", None)),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"--layer 7 needs {', '.join(missing)}")
    backends = tuple(dict.fromkeys(parse_hostport(b, "--backend") for b in args.backend))
    listen = parse_hostport(args.listen, "--listen")
    redirect_from = (
        parse_hostport(args.redirect_from, "--redirect-from") if args.redirect_from else None
    )
    for backend in backends:
        check_not_itself(listen, backend, "--backend")
        if redirect_from is not None:
            check_not_itself(redirect_from, backend, "--backend")
    if redirect_from is not None and same_listener(listen, redirect_from):
        # SO_REUSEPORT would let both bind and split the port's clients between them.
        raise UsageError(
            f"--redirect-from {args.redirect_from} uses the port of --listen {args.listen}; "
            "give the plain HTTP port, e.g. 80"
        )
    probe = parse_health(getattr(args, "health", None) or "tcp", getattr(args, "host_header", None))
    health = HealthConfig(
        interval=getattr(args, "interval", 1.0),
        timeout=getattr(args, "timeout", 1.0),
        rise=getattr(args, "rise", 2),
        fall=getattr(args, "fall", 2),
        probes=(probe,),
        why=probe.describe(),
    )
    return L7Config(
        listen=listen,
        hostname=args.hostname,
        cert=args.cert,
        key=args.key,
        backends=backends,
        redirect_from=redirect_from,
        redirect_code=301 if args.redirect_code == 301 else 308,
        acme_passthrough=args.acme_passthrough,
        affinity=args.affinity == "cookie",
        balance=getattr(args, "balance", None) or "leastconn",
        # Not given: L7Config's own defaults (None tells "not given" for the flag checks).
        http_timeout=args.http_timeout if args.http_timeout is not None else L7Config.http_timeout,
        header_timeout=(
            args.header_timeout if args.header_timeout is not None else L7Config.header_timeout
        ),
        forwarded_port=listen[1],
        access_log=_access_log(args),
        health=health,
        drain_timeout=getattr(args, "drain_timeout", None) or 30.0,
        connect_timeout=getattr(args, "connect_timeout", None) or 5.0,
        retries=getattr(args, "retries", 2),
        max_connections=getattr(args, "max_connections", None) or 10_000,
        admin=_admin(args),
    )


def _admin(args: argparse.Namespace) -> HostPort | None:
    """`--admin HOST:PORT`, `off`, or (as at layer 4) 127.0.0.1:8404 when not given."""
    admin = getattr(args, "admin", None)
    if admin is None:
        return DEFAULT_ADMIN
    from rke2ha.lb.config import parse_hostport

    return None if admin == "off" else parse_hostport(admin, "--admin")


def _access_log(args: argparse.Namespace) -> str | None:
    from rke2ha.lb.accesslog import log_target

    return log_target(getattr(args, "access_log", "-"))


def _layer7_flags(args: argparse.Namespace) -> list[str]:
    """The layer 7 flags given on the command line."""
    given = [
        ("--cert", args.cert),
        ("--key", args.key),
        ("--hostname", args.hostname),
        ("--redirect-from", args.redirect_from),
        ("--affinity", args.affinity != "none"),
        ("--acme-passthrough", args.acme_passthrough),
        ("--redirect-code", args.redirect_code is not None),
        ("--http-timeout", args.http_timeout is not None),
        ("--header-timeout", args.header_timeout is not None),
    ]
    return [flag for flag, value in given if value]


def wants_layer7(args: argparse.Namespace) -> bool:
    """True for `--layer 7`, or for a spec (no --listen) whose load_balancer.layer is 7.

    Flags that would be ignored are refused instead (UsageError): layer 7 flags without
    `--layer 7` in the ad hoc form, ad hoc layer 7 flags with `-f` (the spec has them), and
    `--send-proxy` at layer 7 (the nodes get X-Forwarded-For there).
    """
    flags = _layer7_flags(args)
    ad_hoc = bool(getattr(args, "listen", None) or getattr(args, "backend", None))
    if flags and not ad_hoc:
        raise UsageError(
            f"{', '.join(flags)}: with -f the spec sets these (load_balancer.tls, "
            "hostname, load_balancer.affinity ...); leave the flags out"
        )
    if ad_hoc and args.layer != 7:
        if flags:
            which = "is a layer 7 flag" if len(flags) == 1 else "are layer 7 flags"
            raise UsageError(
                f"{', '.join(flags)} {which}; add --layer 7 "
                "(layer 4 passes TLS through to the nodes untouched)"
            )
        return False
    if args.layer is not None:
        layer7 = bool(args.layer == 7)
    else:
        layer7 = _spec(args).load_balancer.layer == 7
    if layer7 and getattr(args, "send_proxy", False):
        raise UsageError(
            "--send-proxy is for layer 4; at layer 7 the nodes learn the client's address "
            "from X-Forwarded-For"
        )
    return layer7


def _spec(args: argparse.Namespace) -> Spec:
    """The spec of `-f`, read once per command (the layer decision and serving share it)."""
    from rke2ha.specfile import load_spec

    cached: Spec | None = getattr(args, "_l7_spec", None)
    if cached is None:
        cached = load_spec(getattr(args, "spec_file", None))
        args._l7_spec = cached
    return cached


def maybe_serve_l7(args: argparse.Namespace) -> int | None:
    """The `lb serve` hook: serve layer 7 and return the exit code, or None for layer 4."""
    return serve_l7(args) if wants_layer7(args) else None


def serve_l7(args: argparse.Namespace) -> int:
    """Serve layer 7 from the spec (`-f`) or from the ad-hoc flags."""
    from rke2ha.lb.config import ADMIN_FLAG
    from rke2ha.lb.l7.server import from_spec, l4_companion, run
    from rke2ha.lb.spec_errors import warn_spec_errors
    from rke2ha.specfile import load_spec

    workers = getattr(args, "workers", 1) or 1
    if getattr(args, "listen", None) or getattr(args, "backend", None):
        if getattr(args, "spec_file", None):
            raise UsageError("give either -f FILE or --listen/--backend, not both")
        return run(config_from_args(args), workers=workers)

    first = True

    def from_file() -> tuple[L7Config, LbConfig]:
        nonlocal first
        # The first read is the one the layer decision made; SIGHUP reads the file again.
        spec = _spec(args) if first else load_spec(getattr(args, "spec_file", None))
        first = False
        offset = getattr(args, "port_offset", 0) or 0
        config = replace(from_spec(spec, port_offset=offset), access_log=_access_log(args))
        _, base = l4_companion(spec, port_offset=offset)
        warn_spec_errors(spec)  # once the spec is known to be servable
        if getattr(args, "admin", None) is not None:
            # --admin wins over the spec's.
            base = replace(base, admin=_admin(args), admin_from=ADMIN_FLAG)
        return config, replace(base, access_log=_access_log(args))

    config, base = from_file()
    return run(config, base, workers=workers, reload_source=from_file)
