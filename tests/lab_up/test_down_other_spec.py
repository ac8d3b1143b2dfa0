"""`down -f other.yaml` leaves alone a lab that another spec file started (issue 15).

Two spec files with the same name and folder share one state. Before the fix `down` of
either stopped whichever lab ran there; now it refuses like `up` does, names the spec
the lab was started from and both ways out, and stops it only with `--replace`.

A real lab on 127.0.194.0/24 (this file's own subnet), driven with the CLI.
"""

from __future__ import annotations

from pathlib import Path

from tests.lab_up.helpers import (
    assert_nothing_left,
    down,
    lab_pids,
    lab_spec,
    lab_status,
    listening_sockets,
    rke2ha,
    up,
    write_spec,
)

PREFIX = "127.0.194."
OFFSET = 26000


def test_down_of_another_spec_refuses_and_stops_only_with_replace(tmp_path: Path) -> None:
    assert listening_sockets(PREFIX) == [], f"{PREFIX}x is in use before the test"
    document = lab_spec(offset=OFFSET, lab={"subnet": f"{PREFIX}0/24", "port_offset": OFFSET})
    running = write_spec(tmp_path / "lab.yaml", document)
    # Same name and folder, another file (and another health interval): another spec.
    document["load_balancer"]["health"]["interval"] = "500ms"
    other = write_spec(tmp_path / "other.yaml", document)
    try:
        started = up(running, offset=OFFSET)
        assert started.code == 0, started.err + started.out
        pids = sorted(lab_pids(running))
        assert pids

        refused = down(other)
        assert refused.code == 1, refused.out + refused.err
        assert f"was started from {running.resolve()}, not from {other}" in refused.err
        # Commands as this process was started (`python -m rke2ha` here), to run as printed.
        assert f" -m rke2ha down -f {running.resolve()}`" in refused.err
        assert f" -m rke2ha down -f {other} --replace`" in refused.err
        # Nothing was stopped: the same processes run and the lab is whole.
        assert sorted(lab_pids(running)) == pids
        assert lab_status(running)["all_up"] is True

        forced = rke2ha("down", "-f", str(other), "--replace", "--json")
        assert forced.code == 0, forced.err + forced.out
        assert forced.json()["ok"] is True
        assert_nothing_left(running, PREFIX)
    finally:
        down(running)
        assert_nothing_left(running, PREFIX)
