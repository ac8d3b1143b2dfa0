"""The pair drill's judgement on hand-made observations (no machines, no clock)."""

from __future__ import annotations

from rich.console import Console

from rke2ha.check.lbdrill import (
    LbDrillReport,
    LbDrillSettings,
    Observed,
    Request,
    analyse,
    moved,
)
from rke2ha.check.report import print_lb_drill


def stream(
    failed_between: tuple[float, float] = (0, 0), *, late_failures: int = 0
) -> list[Request]:
    """Requests every 0.05 s over 8 s; those started in `failed_between` fail, and so do
    `late_failures` of the last ones."""
    out = []
    for index in range(160):
        started = index * 0.05
        lost = failed_between[0] <= started < failed_between[1] or index >= 160 - late_failures
        out.append(Request(started, not lost, "timed out after 2s" if lost else None))
    return out


def observed(**kw: object) -> Observed:
    values: dict[str, object] = {
        "fault": "engine",
        "holder": "lb-a",
        "peer": "lb-b",
        "requests": stream((1.0, 3.2)),
        "fault_at": 1.0,
        "moved_at": 3.25,
        "flapped_at": None,
        "came_back": False,
        "restore_note": "restore: done",
    }
    values.update(kw)
    return Observed(**values)  # type: ignore[arg-type]


def test_a_quick_move_with_failures_only_before_it_meets_every_target() -> None:
    report = analyse(observed())
    assert report.moved_after == 2.25 and report.moved_in_time
    assert (report.requests, report.failed, report.failed_after_move, report.lost) == (
        160, 44, 0, 44,
    )  # fmt: skip
    assert report.ok and report.problems == []
    assert report.errors == ["timed out after 2s"]


def test_a_slow_move_fails_its_target_per_fault() -> None:
    assert not analyse(observed(moved_at=4.1)).ok  # 3.1 s after the engine stopped
    freeze = analyse(observed(fault="freeze", moved_at=4.1))  # 3.1 s after the freeze
    assert freeze.ok and freeze.target_seconds == 5.0
    late = analyse(observed(fault="freeze", moved_at=6.5))
    assert late.problems == ["the address moved after 5.50s (target < 5s)"]


def test_failures_after_the_move_count_against_the_pair() -> None:
    report = analyse(observed(requests=stream((1.0, 3.2), late_failures=2)))
    assert report.failed_after_move == 2 and report.lost == 44
    assert "2 requests failed after the move (target 0)" in report.problems


def test_a_move_never_seen_fails_and_every_failure_after_the_fault_counts() -> None:
    report = analyse(observed(moved_at=None))
    assert report.moved_after is None and report.failed_after_move == 44
    assert report.problems[0] == "the address never moved to lb-b"


def test_flapping_back_fails_and_so_does_coming_back_after_an_engine_restore() -> None:
    assert "still faulty" in analyse(observed(flapped_at=5.0)).problems[0]
    assert "after the restore (nopreempt)" in analyse(observed(came_back=True)).problems[0]
    # A thawed host may win the address back by priority: reported, not a failure.
    assert analyse(observed(fault="freeze", came_back=True)).ok


def test_moved_means_the_peer_alone_after_an_engine_stop_and_the_peer_after_a_freeze() -> None:
    assert moved(["lb-b"], "lb-a", "lb-b", "engine")
    assert not moved(["lb-a", "lb-b"], "lb-a", "lb-b", "engine")
    assert not moved(["lb-a"], "lb-a", "lb-b", "engine")
    # The frozen keepalived cannot remove the address from its own interface.
    assert moved(["lb-a", "lb-b"], "lb-a", "lb-b", "freeze")
    assert not moved(["lb-a"], "lb-a", "lb-b", "freeze")


def test_the_report_as_json_and_as_a_table() -> None:
    faults = [analyse(observed()), analyse(observed(fault="freeze", moved_at=7.0))]
    drill = LbDrillReport(LbDrillSettings(), faults)
    data = drill.as_dict()
    assert data["ok"] is False and data["kind"] == "lb"
    assert data["faults"][0]["moved_after"] == 2.25 and data["faults"][0]["lost"] == 44
    assert data["faults"][1]["problems"] == ["the address moved after 6.00s (target < 5s)"]
    console = Console(width=140, record=True, color_system=None)
    print_lb_drill(drill, console)
    text = console.export_text()
    assert "│ engine │ lb-a │ lb-b │ 2.25s │ < 3s   │ 160 │ 44   │ 0     │ no   │ no   │" in text
    assert "drill FAILED: freeze: the address moved after 6.00s" in text
