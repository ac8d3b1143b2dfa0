"""A failed `up` leaves no half lab, quotes only this run's log, and advises spec fields.

Live, on 127.0.173.0/24 (this file's alone), port offset 23000. Two ways to fail:
- a port the lab needs is held by another program: `up` refuses before it starts
  anything and names the spec fields that move the lab (never a flag `up` lacks);
- the load balancer dies at start after the nodes and DNS were spawned (its access log
  path is a folder, which only the load balancer itself finds: `up` runs `validate`
  first, so a spec fault would stop it before anything starts): `up` stops every process
  it started, and its error quotes this run's cause, not the older lines already in the
  same log file.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from tests.lab_up.helpers import (
    assert_nothing_left,
    lab_pids,
    lab_spec,
    listening_sockets,
    rke2ha,
    up,
)
from tests.lab_up.helpers import write_spec as write_yaml

PREFIX = "127.0.173."
OFFSET = 23000
LB = f"{PREFIX}10"

# What an earlier run left in lb.log: an admin port error and a uvloop traceback.
STALE = f"""--- 2026-01-01T00:00:00 rke2ha lab: starting lb
rke2ha lb serve: error: cannot serve the admin endpoint on 127.0.0.1:8404: address already \
in use; pick another with --admin HOST:PORT
Traceback (most recent call last):
  File "uvloop/loop.pyx", line 1517, in uvloop.loop.Loop.run_until_complete
  File "/usr/lib/python3/asyncio/base_events.py", line 1, in create_server
OSError: [Errno 98] error while attempting to bind on address ('{LB}', 23443): address in use
"""


def _spec(**load_balancer: Any) -> dict[str, Any]:
    document = lab_spec(offset=OFFSET, lab={"subnet": f"{PREFIX}0/24", "port_offset": OFFSET})
    document["load_balancer"].update(load_balancer)
    return document


@pytest.fixture(autouse=True)
def _own_subnet() -> None:
    assert listening_sockets(PREFIX) == [], f"{PREFIX}x is in use before the test"


def test_a_taken_admin_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    spec_file = write_yaml(tmp_path / "rke2ha.yaml", _spec())
    with socket.socket() as holder:
        holder.bind((LB, 8404 + OFFSET))
        holder.listen()
        run = up(spec_file, offset=OFFSET)
        assert run.code == 1, run.err
        assert lab_pids(spec_file) == []
        assert listening_sockets(PREFIX) == [f"tcp {LB}:{8404 + OFFSET}"]  # only ours
    assert f"tcp {LB}:{8404 + OFFSET} (lb, load_balancer.admin)" in run.err
    assert "Nothing was started" in run.err
    assert "lab.subnet" in run.err and "load_balancer.admin" in run.err
    assert "--admin" not in run.err  # `up` has no such flag
    assert_nothing_left(spec_file, PREFIX)


def test_a_load_balancer_that_dies_stops_the_whole_lab_and_quotes_this_run(
    tmp_path: Path,
) -> None:
    spec_file = write_yaml(tmp_path / "rke2ha.yaml", _spec())
    log = tmp_path / ".rke2ha" / "lab" / "lab" / "logs" / "lb.log"
    log.parent.mkdir(parents=True)
    log.write_text(STALE)
    (log.parent / "lb-access.log").mkdir()

    run = up(spec_file, offset=OFFSET)

    assert run.code == 1, run.err
    assert run.err.count("rke2ha up: error: ") == 1
    message = run.err.partition("rke2ha up: error: ")[2]
    first = message.splitlines()[0]
    assert first.startswith("lab lb exited while starting: rke2ha lb serve: error: ")
    assert "lb-access.log': cannot open it for appending" in first  # the cause, first
    for stale in ("8404", "--admin", "Traceback", "uvloop", "Errno 98"):
        assert stale not in run.err, stale
    assert "nothing of this lab runs" in message.splitlines()[1]
    # Nodes and DNS had been started before the load balancer died: all stopped again.
    assert (tmp_path / ".rke2ha" / "lab" / "lab" / "logs" / "dns.log").exists()
    assert_nothing_left(spec_file, PREFIX)


def test_lb_serve_names_the_spec_field_when_the_admin_address_is_taken(tmp_path: Path) -> None:
    """The load balancer started from a spec (as the lab starts it) advises the spec field;
    with --admin it names the flag."""
    spec_file = write_yaml(tmp_path / "rke2ha.yaml", _spec())
    serve = ("lb", "serve", "-f", str(spec_file), "--port-offset", str(OFFSET))
    with socket.socket() as holder:
        holder.bind((LB, 8404 + OFFSET))
        holder.listen()
        from_spec = rke2ha(*serve, "--access-log", "off", timeout=30)
        holder_port = holder.getsockname()[1]
        from_flag = rke2ha(*serve, "--admin", f"{LB}:{holder_port}", timeout=30)
    assert from_spec.code == 1, from_spec.err
    assert f"cannot serve the admin endpoint on {LB}:{8404 + OFFSET}" in from_spec.err
    assert "load_balancer.admin in the spec" in from_spec.err
    assert "--admin" not in from_spec.err
    assert from_flag.code == 1 and "--admin HOST:PORT" in from_flag.err
