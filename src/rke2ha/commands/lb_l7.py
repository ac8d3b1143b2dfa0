"""The layer 7 flags of `rke2ha lb serve`: their parser and what they mean together.

`commands/lb.py` adds them with `add_l7_arguments(parser)`, asks `wants_layer7` which layer
the flags or the spec ask for, and passes `l7_flags(args)` to `config.from_flags`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rke2ha.commands.hostname_arg import host_name
from rke2ha.durations import parse_duration
from rke2ha.errors import UsageError

# The load balancer and the spec model load when a command runs, not when `rke2ha --help`
# builds the parser.
if TYPE_CHECKING:
    from rke2ha.lb.config import L7Flags
    from rke2ha.spec import Spec


def check_key_mode(key: Path | None) -> None:
    """An ad hoc `--key` readable by others is refused, as the same key in a spec is
    (rule tls.key in `rke2ha validate`): exit 1 before anything listens."""
    from rke2ha.errors import InvalidError
    from rke2ha.secretfiles import is_private

    if key is None or not key.is_file():
        return  # missing: the certificate loader says so, naming the file
    if not is_private(key):
        mode = key.stat().st_mode & 0o777
        raise InvalidError(
            f"--key {key}: the private key is readable by others (mode {mode:o}); "
            f"run: chmod 600 {key}"
        )


def add_l7_arguments(parser: argparse.ArgumentParser) -> None:
    from rke2ha.lb.config import HEADER_TIMEOUT
    from rke2ha.spec import LoadBalancer

    spec_lb = LoadBalancer()
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
        type=host_name,
        metavar="NAME",
        help="the Rancher hostname (a name, not a URL): the certificate must cover it; "
        "redirects go to it",
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
        help=f"status of that redirect (default {spec_lb.redirect_code}; 308 keeps the method)",
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
        help="read/write and websocket idle timeout "
        f"(default {spec_lb.http_timeout:g}s, Rancher's advice)",
    )
    group.add_argument(
        "--header-timeout",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help=f"a request head must arrive within this, or 408 (default {HEADER_TIMEOUT:g}s)",
    )


def l7_flags(args: argparse.Namespace) -> L7Flags:
    """The ad hoc layer 7 flags as the library takes them (`config.from_flags(l7=...)`)."""
    from rke2ha.lb.config import SPEC_DEFAULTS, L7Flags

    return L7Flags(
        cert=args.cert,
        key=args.key,
        hostname=args.hostname,
        redirect_from=args.redirect_from,
        redirect_code=301 if args.redirect_code == 301 else SPEC_DEFAULTS.redirect_code,
        acme_passthrough=args.acme_passthrough,
        affinity=args.affinity == "cookie",
        http_timeout=(
            args.http_timeout if args.http_timeout is not None else SPEC_DEFAULTS.http_timeout
        ),
        header_timeout=(
            args.header_timeout if args.header_timeout is not None else L7Flags.header_timeout
        ),
    )


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


def wants_layer7(args: argparse.Namespace, spec: Spec | None) -> bool:
    """True for `--layer 7`, or for a spec whose load_balancer.layer is 7.

    Flags that would be ignored are refused instead (UsageError): layer 7 flags without
    `--layer 7` in the ad hoc form, ad hoc layer 7 flags with `-f` (the spec has them), a
    `--layer` the spec contradicts, and `--send-proxy` at layer 7 (the nodes get
    X-Forwarded-For there).
    """
    flags = _layer7_flags(args)
    if spec is not None:
        if flags:
            raise UsageError(
                f"{', '.join(flags)}: with -f the spec sets these (load_balancer.tls, "
                "hostname, load_balancer.affinity ...); leave the flags out"
            )
        layer = spec.load_balancer.layer
        if args.layer is not None and args.layer != layer:
            raise UsageError(
                f"load_balancer.layer is {layer} but --layer {args.layer} was given; drop "
                f"--layer {args.layer} to serve the spec at layer {layer}"
            )
        layer7 = layer == 7
    else:
        if args.layer != 7 and flags:
            which = "is a layer 7 flag" if len(flags) == 1 else "are layer 7 flags"
            raise UsageError(
                f"{', '.join(flags)} {which}; add --layer 7 "
                "(layer 4 passes TLS through to the nodes untouched)"
            )
        layer7 = args.layer == 7
    if layer7 and args.send_proxy:
        raise UsageError(
            "--send-proxy is for layer 4; at layer 7 the nodes learn the client's address "
            "from X-Forwarded-For"
        )
    return layer7
