"""Which log lines a failed lab process is reported with: this run's, the cause alone."""

from __future__ import annotations

from pathlib import Path

from rke2ha.providers.lab.logexcerpt import excerpt, log_excerpt

OLD_RUN = (
    "--- 2026-01-01T00:00:00 rke2ha lab: starting lb\n"
    "rke2ha lb serve: error: cannot serve the admin endpoint on 127.0.0.1:8404\n"
)
TRACEBACK = (
    "2026-12-06 10:00:00,000 rke2ha-lb[7] INFO port-443: listening on 127.0.9.10:10443\n"
    "Traceback (most recent call last):\n"
    '  File "uvloop/loop.pyx", line 1517, in uvloop.loop.Loop.run_until_complete\n'
    "    return future.result()\n"
    "\n"
    "During handling of the above exception, another exception occurred:\n"
    "OSError: [Errno 98] address already in use\n"
)


def test_only_the_bytes_of_this_run_are_read(tmp_path: Path) -> None:
    log = tmp_path / "lb.log"
    log.write_text(OLD_RUN)
    offset = log.stat().st_size
    with log.open("a") as handle:
        handle.write("--- 2026-12-06T10:00:00 rke2ha lab: starting lb\n")
        handle.write("rke2ha lb serve: error: /x/tls.crt: not a PEM certificate\n")
    assert log_excerpt(log, offset) == "rke2ha lb serve: error: /x/tls.crt: not a PEM certificate"


def test_a_traceback_is_reported_by_its_last_line() -> None:
    assert excerpt(TRACEBACK) == "OSError: [Errno 98] address already in use"


def test_rke2has_own_error_line_wins_over_a_later_traceback() -> None:
    text = "rke2ha lab node: error: port 10443 in use\n" + TRACEBACK
    assert excerpt(text) == "rke2ha lab node: error: port 10443 in use"


def test_without_an_error_line_the_last_lines_and_nothing_of_an_empty_run(
    tmp_path: Path,
) -> None:
    assert excerpt("one\ntwo\nthree\n") == "two | three"
    assert excerpt("--- 2026 rke2ha lab: starting dns\n") == "(nothing in its log for this run)"
    assert log_excerpt(tmp_path / "missing.log", 0) == "(nothing in its log for this run)"
