"""`make demo`'s one screen, from the JSON documents `rke2ha up` and `rke2ha check --drill`
wrote (scripts/demo.sh): the verdict of each, failing checks in full, one line per drill
fault and how to reach and stop the lab. Presentation only: every number comes from the
two commands; the full check table is one printed command away.

    python scripts/demo_summary.py up UP.json
    python scripts/demo_summary.py drill CHECK.json
    python scripts/demo_summary.py next UP.json SECONDS
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _load(path: str) -> dict[str, Any]:
    with open(path) as handle:
        document = json.load(handle)
    assert isinstance(document, dict)
    return document


def _failures(check: dict[str, Any]) -> list[str]:
    return [
        f"  FAIL {c['id']}: {c.get('detail', '')}"
        for c in check.get("checks", [])
        if c.get("status") == "fail"
    ]


def _counts(check: dict[str, Any]) -> str:
    summary = check.get("summary", {})
    return (
        f"{summary.get('pass', 0)} checks passed, {summary.get('fail', 0)} failed, "
        f"{summary.get('skip', 0)} skipped"
    )


def up(path: str) -> None:
    document = _load(path)
    check = document.get("check") or {}
    verdict = "verified" if document.get("ok") else "NOT verified"
    print(
        f"lab {verdict} {document.get('seconds_to_verified', 0):.2f}s after `up` started: "
        f"{_counts(check)}"
    )
    for line in _failures(check):
        print(line)


def drill(path: str) -> None:
    document = _load(path)
    for line in _failures(document):
        print(line)
    result = document.get("drill") or {}
    for phase in result.get("phases", []):
        print(
            f"{phase['fault']:<7} {phase['requests']} requests, {phase['failed_after_left']} "
            f"failed after {phase['node']} left rotation ({phase['left_rotation_after']:.2f}s), "
            f"{phase['lost_in_flight']} lost in flight; back in {phase['back_in_rotation_after']:.2f}s"
        )
    verdict = "OK" if document.get("ok") else "FAILED"
    print(f"check + drill {verdict}: {_counts(document)}")


def next_steps(path: str, seconds: str) -> None:
    document = _load(path)
    stop = str(document.get("stop", ""))
    program = stop.split(" down ", 1)[0]  # the runnable rke2ha, as the lab printed it
    spec = stop.rsplit(" -f ", 1)[-1]
    print(f"== the lab is running ({seconds}s for up + check + drill)")
    print(f"Rancher URL      {document.get('url')}   (CA: {document.get('ca_file')})")
    for command in document.get("commands", [])[:2]:
        print(f"  $ {command}")
    print(f"Full check:      {program} check -f {spec}")
    print(f"Inject failures: {program} lab kill|freeze|thaw|restart|join node-2 -f {spec}")
    print(f"Status:          {program} lab status -f {spec}")
    print(f"Stop it:         {stop}")


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    {"up": up, "drill": drill, "next": next_steps}[what](*args)
