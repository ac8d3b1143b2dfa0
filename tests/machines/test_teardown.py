"""Nothing outlives a test-machine session: not on a normal end, not when the test fails, not
on SIGTERM; and what a SIGKILLed session leaves, the next session's sweep removes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.machines import MachineError, Testbed
from tests.support.machines.sweep import PREFIX_RE, Leftovers, find_leftovers, sweep

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]

# A session in a child process: prints its prefix once its machine runs, then waits.
CHILD = """\
import time
from tests.support.machines.testbed import session
with session(["solo"]) as bed:
    print(bed.prefix, flush=True)
    time.sleep(300)
"""


# A pytest run whose one test holds the `testbed` fixture (printing its prefix) and waits.
FIXTURE_USER = """\
import time

def test_holds_the_machines(testbed):
    print(testbed.prefix, flush=True)
    time.sleep(300)
"""


@pytest.fixture(autouse=True)
def _needs_machines() -> None:
    from tests.conftest import testbed_unavailable

    reason = testbed_unavailable()
    if reason:
        pytest.skip(reason)


def nothing_left(prefix: str) -> Leftovers:
    """What is left of `prefix`, looked at from several sides (waits briefly for processes
    the kernel is still reaping)."""
    deadline = time.monotonic() + 5
    found = find_leftovers(prefix)
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = find_leftovers(prefix)
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    assert prefix not in links.stdout
    mounts = Path("/proc/self/mountinfo").read_text()
    assert prefix not in mounts
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert prefix not in netns.stdout
    nspawn = subprocess.run(["pgrep", "-af", f"--machine={prefix}-"], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert nspawn.stdout == ""
    return found


def test_close_leaves_nothing_even_when_the_test_failed_with_a_frozen_machine() -> None:
    with pytest.raises(RuntimeError, match="the test failed"), Testbed() as bed:
        (machine,) = bed.boot(["twin"], hostnames={"twin": "node-1"})
        assert machine.sh("hostname").stdout.strip() == "node-1"
        assert find_leftovers(bed.prefix).processes  # it is really running
        machine.freeze()  # a frozen machine is thawed to be stopped, not left behind
        raise RuntimeError("the test failed")
    assert not nothing_left(bed.prefix), find_leftovers(bed.prefix).describe()
    assert not machine.merged.exists()


def _start_child(argv: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        argv or [sys.executable, "-c", CHILD],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = child.stdout.readline() if ready else ""
        if PREFIX_RE.match(line.strip() + "-"):
            return child, line.strip()
        if ready and not line:  # EOF: it failed
            break
    child.kill()
    pytest.fail(f"the child session did not boot its machines: {child.communicate()[1][-2000:]}")


def test_sigterm_tears_the_session_down() -> None:
    child, prefix = _start_child()
    try:
        assert find_leftovers(prefix).processes
        child.send_signal(signal.SIGTERM)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0  # interrupted, not finished
    assert not nothing_left(prefix), find_leftovers(prefix).describe()


def test_sigterm_to_pytest_tears_the_fixture_down(tmp_path: Path) -> None:
    (tmp_path / "test_hold.py").write_text(FIXTURE_USER)
    argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
            "-s", "-q", "--rootdir", str(tmp_path), str(tmp_path / "test_hold.py")]  # fmt: skip
    child, prefix = _start_child(argv)
    try:
        assert len(find_leftovers(prefix).netns) == 5  # bridge, workstation, three machines
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 2, out  # pytest's "interrupted"
    assert not nothing_left(prefix), find_leftovers(prefix).describe()


def test_a_killed_session_is_swept_by_the_next_one() -> None:
    child, prefix = _start_child()
    child.kill()
    child.wait(10)
    left = find_leftovers(prefix)
    assert left.netns and left.processes and left.directory, left.describe()
    assert prefix in sweep()
    assert not nothing_left(prefix), find_leftovers(prefix).describe()


def test_a_machine_that_cannot_boot_is_one_clear_error_and_leaves_nothing() -> None:
    with Testbed() as bed, pytest.raises(MachineError) as failed:
        bed.boot(["bad"], hostnames={"bad": "not a hostname!"})
    message = str(failed.value)
    assert "bad: systemd-nspawn exited" in message
    assert "hostname" in message.lower()  # nspawn's own complaint, from the console
    assert not nothing_left(bed.prefix), find_leftovers(bed.prefix).describe()
