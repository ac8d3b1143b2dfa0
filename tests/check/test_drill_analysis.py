"""The drill's arithmetic: failed requests, time out of rotation, from outcomes alone."""

from __future__ import annotations

from rke2ha.check.drill import DrillReport, DrillSettings, Outcome, analyse_phase
from rke2ha.check.lbstatus import node_serves
from rke2ha.check.target import Endpoint


def stream(pattern: list[tuple[float, str | None]]) -> list[Outcome]:
    return [
        Outcome(t, 0.01 if node else 2.0, node, None if node else "timeout") for t, node in pattern
    ]


def test_kill_with_no_failed_request_leaves_rotation_at_once() -> None:
    outcomes = stream([(0.0, "n3"), (0.05, "n1"), (0.5, "n1"), (0.55, "n2"), (0.6, "n1")])
    phase = analyse_phase("kill", "n3", outcomes, fault_at=0.5, status_left_at=None)
    assert phase.failed == 0 and phase.left_rotation_after == 0.0
    assert phase.served_by == {"n3": 1, "n1": 3, "n2": 1}
    assert phase.left_rotation_seen_by == "responses"


def test_freeze_failures_before_detection_set_the_rotation_time_from_responses() -> None:
    outcomes = stream([(0.5, None), (0.55, "n1"), (1.2, None), (1.3, "n2"), (2.0, "n1")])
    phase = analyse_phase("freeze", "n3", outcomes, fault_at=0.5, status_left_at=None)
    assert phase.failed == 2 and phase.left_rotation_after == 0.7
    assert phase.errors == ["timeout"]
    assert phase.slowest == 2.0


def test_status_time_counts_failures_after_the_node_left() -> None:
    outcomes = stream([(0.6, None), (1.6, None), (1.7, "n1")])
    phase = analyse_phase("freeze", "n3", outcomes, fault_at=0.5, status_left_at=1.5)
    assert phase.left_rotation_after == 1.0
    assert phase.left_rotation_seen_by == "load balancer /status"
    assert phase.failed == 2 and phase.failed_after_left == 1


def test_report_ok_needs_zero_failures_and_the_node_back() -> None:
    good = analyse_phase("kill", "n3", stream([(0.6, "n1")]), 0.5, None)
    good.back_in_rotation_after = 0.4
    lost = analyse_phase("freeze", "n3", stream([(0.6, None)]), 0.5, None)
    lost.back_in_rotation_after = 0.4
    assert DrillReport("n3", DrillSettings(), [good]).ok
    assert not DrillReport("n3", DrillSettings(), [good, lost]).ok
    never_back = analyse_phase("kill", "n3", stream([(0.6, "n1")]), 0.5, None)
    assert not DrillReport("n3", DrillSettings(), [never_back]).ok
    document = DrillReport("n3", DrillSettings(), [good, lost]).as_dict()
    assert document["ok"] is False and document["phases"][1]["failed"] == 1


SNAPSHOT = {
    "frontends": [
        {
            "name": "443",
            "address": "127.0.60.10:21443",
            "backends": [
                {"name": "n1", "address": "127.0.60.11:21443", "serves": True, "state": "up"},
                {"name": "n3", "address": "127.0.60.13:21443", "serves": False, "state": "down"},
            ],
        }
    ]
}


def test_status_snapshot_says_whether_a_node_serves() -> None:
    frontend = Endpoint("127.0.60.10", 21443)
    assert node_serves(SNAPSHOT, frontend, "n1", None) is True
    assert node_serves(SNAPSHOT, frontend, "other", "127.0.60.13") is False
    assert node_serves(SNAPSHOT, frontend, "n2", "127.0.60.12") is None
    # Another load balancer's admin port: its frontends are not ours.
    assert node_serves(SNAPSHOT, Endpoint("127.0.9.10", 443), "n1", None) is None
    assert node_serves("not json object", frontend, "n1", None) is None


def test_with_status_a_request_lost_in_flight_before_detection_is_reported_not_failed() -> None:
    phase = analyse_phase("freeze", "n3", stream([(0.6, None), (1.7, "n1")]), 0.5, 1.2)
    phase.back_in_rotation_after = 0.3
    assert phase.failed == 1 and phase.lost_in_flight == 1 and phase.failed_after_left == 0
    assert phase.ok
    late = analyse_phase("freeze", "n3", stream([(1.3, None)]), 0.5, 1.2)
    late.back_in_rotation_after = 0.3
    assert late.failed_after_left == 1 and not late.ok
