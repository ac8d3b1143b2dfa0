"""`make bench`: run every benchmark; each writes bench/results/<name>.json and a table.

A benchmark module exposes `run(results_dir: Path) -> None`. Figures are compared with
HAProxy and nginx measured in the same run, because absolute numbers on shared 2-core
machines drift. Pass names to run a subset: `python -m bench l4 dns`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS: tuple[str, ...] = ("l4", "dns", "l7")
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    wanted = argv or list(BENCHMARKS)
    unknown = [name for name in wanted if name not in BENCHMARKS]
    if unknown:
        print(f"bench: unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.{name}").run(RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
