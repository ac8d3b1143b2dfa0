"""Output: the JSON document machines read and the table people read."""

from __future__ import annotations

import io

from rich.console import Console

from rke2ha.check.catalog import LB_PORT, RANCHER_WEBSOCKET
from rke2ha.check.report import print_text, to_json

RESULTS = [
    LB_PORT.passed("lb.port.80", "a node answered HTTP 308"),
    LB_PORT.failed("lb.port.443", "connection to 127.0.0.1:443 refused", "start it"),
    RANCHER_WEBSOCKET.skipped("rancher.websocket", "skipped: needs a token", "pass --token"),
]


def test_json_shape_and_ok_false_on_a_failure() -> None:
    document = to_json(RESULTS, 0.1234)
    assert document["ok"] is False
    assert document["summary"] == {"pass": 1, "fail": 1, "skip": 1}
    first = document["checks"][0]
    assert set(first) >= {"id", "ok", "status", "detail", "fix", "rule", "source"}
    skipped = document["checks"][2]
    assert skipped["ok"] is False and skipped["status"] == "skip"
    assert document["seconds"] == 0.123


def test_skips_alone_do_not_fail_the_run() -> None:
    assert to_json([RESULTS[0], RESULTS[2]], 0.0)["ok"] is True


def test_table_shows_status_fix_and_rule() -> None:
    out = io.StringIO()
    print_text(RESULTS, 0.5, Console(file=out, width=200, color_system=None), "check")
    text = out.getvalue()
    assert "FAIL" in text and "SKIP" in text and "PASS" in text
    assert "fix: start it" in text and "rule: check.lb.port" in text
    assert "FAILED: 1 passed, 1 failed, 1 skipped" in text


def test_drill_report_goes_into_json_and_decides_ok() -> None:
    from rke2ha.check.drill import DrillReport, DrillSettings, Outcome, analyse_phase

    phase = analyse_phase("kill", "n3", [Outcome(0.6, 0.01, "n1")], 0.5, None)
    phase.back_in_rotation_after = None  # never came back
    drill = DrillReport("n3", DrillSettings(), [phase]).as_dict()
    document = to_json([RESULTS[0]], 0.1, drill)
    assert document["drill"]["phases"][0]["back_in_rotation_after"] is None
    assert document["ok"] is False
