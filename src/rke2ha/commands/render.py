"""`rke2ha render`: write the configs of the real engines for the spec into a folder.

The renderers and the spec model load inside the handler, keeping `rke2ha --help` fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rke2ha.commands.common import add_json_argument, add_spec_argument, print_json, spec_from_args
from rke2ha.errors import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "render",
        help="write configs for HAProxy, nginx, keepalived, RKE2, Rancher and DNS",
        description=(
            "Render the spec into configs for the engines operators already run: "
            "haproxy/haproxy.cfg, nginx/nginx.conf, keepalived/<role>/keepalived.conf (LB "
            "pair only), rke2/<node>/config.yaml, rancher/values.yaml + install.sh, "
            "rancher/ingress-helmchartconfig.yaml (layer 7 or send_proxy: copy to "
            "/var/lib/rancher/rke2/server/manifests/), "
            "dns/<zone>.zone + nsupdate.txt. Files holding secrets (RKE2 token, TLS key, "
            "health token) are written mode 0600. The RKE2 token and the Rancher bootstrap "
            "password are created once (announced on stderr) and reused. The spec must pass "
            "`rke2ha validate` first (exit 1 otherwise) unless --force is given. Same spec, "
            "same bytes. The files written are listed in DIR/.rke2ha-render.json; rendering "
            "into the same folder again removes the files of the earlier render that this one "
            "does not write (only those). A non-empty folder without that list is refused "
            "(exit 2) unless --force is given."
        ),
    )
    add_spec_argument(parser)
    parser.add_argument(
        "-o", "--out", required=True, metavar="DIR", help="folder to write into (created)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="render even when validate reports errors, and into a non-empty folder no "
        "earlier render wrote (its files are overwritten when rendered, none removed)",
    )
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from rke2ha.render import render_to_dir
    from rke2ha.render.ingress import INGRESS_CONFIG, installed_path
    from rke2ha.specfile import DEFAULT_SPEC_FILE
    from rke2ha.state import StateStore

    if not args.out.strip():
        raise UsageError("-o/--out is empty; give the folder to write into (e.g. -o out)")
    spec = spec_from_args(args)
    label = Path(args.spec_file).name if args.spec_file else DEFAULT_SPEC_FILE.name
    out_dir = Path(args.out)
    # Nodes `rke2ha lb drain` took out stay out of a rendered nginx.conf too (the state
    # file's record, the one `up` renders from).
    state = StateStore(spec.state_dir, spec.name).load()
    drained = state.drained if state is not None else []
    result = render_to_dir(spec, out_dir, label, force=args.force, drained=drained)
    secret = set(result.secret)
    if args.json:
        print_json(
            {
                "ok": True,
                "out": str(out_dir),
                "files": [str(path) for path in result.written],
                "secret_files": [str(path) for path in result.written if path in secret],
                "removed": [str(path) for path in result.removed],
                "skipped": [
                    {"path": str(out_dir / relative), "reason": why}
                    for relative, why in result.skipped.items()
                ],
            }
        )
        return EXIT_OK
    ingress_config = out_dir / INGRESS_CONFIG
    for path in result.written:
        note = "  (0600: holds a secret)" if path in secret else ""
        if path == ingress_config:
            note = f"  (install as {installed_path()} on every server)"
        print(f"{path}{note}")
    for path in result.removed:
        print(f"removed {path} (an earlier render wrote it; this spec does not)", file=sys.stderr)
    for relative, why in result.skipped.items():
        print(f"skipped {out_dir / relative}: {why}", file=sys.stderr)
    if drained:
        print(
            f"note: nginx/nginx.conf keeps {', '.join(drained)} down (`rke2ha lb drain`, in "
            "the state file); `rke2ha lb enable NODE` puts a node back",
            file=sys.stderr,
        )
    return EXIT_OK
