"""`python -m rke2ha.providers.existing.builtincheck SPEC`: the built-in unit's config check.

Loads SPEC as `rke2ha lb serve -f SPEC` will (the layer 4 or layer 7 config, and at layer 7
the certificate and key the spec names, with the loader the server uses); exit 1 with the
one-line reason when the server would refuse it, so the unit is never pointed at it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rke2ha.errors import Rke2haError
from rke2ha.providers.existing.builtin import check_tls_files, load_served_spec


def check_spec_file(path: Path) -> None:
    """InvalidError/UsageError when `lb serve -f path` would refuse the file."""
    spec = load_served_spec(path)
    tls = spec.load_balancer.tls
    if spec.load_balancer.layer == 7 and tls is not None:
        check_tls_files(spec.resolve(tls.cert), spec.resolve(tls.key), spec.hostname)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m rke2ha.providers.existing.builtincheck SPEC", file=sys.stderr)
        return 2
    try:
        check_spec_file(Path(argv[0]))
    except Rke2haError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{argv[0]}: the built-in load balancer accepts it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
