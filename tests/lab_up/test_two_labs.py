"""Two labs on one machine: each opens only its own addresses and ports, the admin
endpoint's included, so they come up side by side and go down independently (issue 15).

Lab A is on 127.0.171.0/24, lab B on 127.0.172.0/24, each with its own port offset and
neither naming `load_balancer.admin`: the default must follow the lab's address and
offset. Before the fix both took 127.0.0.1:8404 and the second lab's load balancer died
on it (or, when something else held 8404, `up` polled that one for a minute).

The second test is the issue's machine: root's lab on the real ports beside a lab on
its port offset.

Deterministic by construction: both subnets are this file's alone, every port is checked
free before the test starts (a listener left by anything else is reported, not raced),
and each step waits on the state it needs, never on time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.lab_up.helpers import (
    NO_CAPABILITIES,
    assert_nothing_left,
    check,
    down,
    failing,
    lab_spec,
    lab_status,
    listening_sockets,
    up,
    write_spec,
)

from rke2ha.providers.lab.ports import in_use, listening

LABS = {"a": ("127.0.171.", 20000), "b": ("127.0.172.", 24000)}


def _spec(prefix: str, offset: int) -> dict[str, Any]:
    document = lab_spec(offset=offset, lab={"subnet": f"{prefix}0/24", "port_offset": offset})
    document["load_balancer"].pop("admin", None)  # the lab's default is under test
    return document


@pytest.fixture
def two_specs(tmp_path: Path) -> dict[str, Path]:
    for prefix, _ in LABS.values():
        assert listening_sockets(prefix) == [], f"{prefix}x is in use before the test"
    return {
        name: write_spec(tmp_path / name / "rke2ha.yaml", _spec(prefix, offset))
        for name, (prefix, offset) in LABS.items()
    }


def test_two_labs_side_by_side_up_and_down_independently(two_specs: dict[str, Path]) -> None:
    specs = two_specs
    try:
        for name, (prefix, offset) in LABS.items():
            run = up(specs[name], offset=offset)  # explicit: root would use the real ports
            assert run.code == 0, f"lab {name}: " + run.err + run.out
            document = run.json()
            assert document["ok"] is True
            assert document["port_offset"] == offset
            # The admin endpoint: the lab's load balancer address, 8404 + its offset.
            admin = f"curl http://{prefix}10:{8404 + offset}/status"
            assert admin in document["commands"]
        for prefix, offset in LABS.values():
            sockets = listening_sockets(prefix)
            assert f"tcp {prefix}10:{8404 + offset}" in sockets
            # Everything each lab listens on is on its own subnet and offset.
            ports = {int(entry.rpartition(":")[2]) for entry in sockets}
            assert all(port - offset in (53, 80, 443, 6443, 8404, 9345) for port in ports)

        # Down A: B keeps running and still passes every check.
        assert down(specs["a"]).code == 0
        assert_nothing_left(specs["a"], LABS["a"][0])
        assert lab_status(specs["b"])["all_up"] is True
        code, result = check(specs["b"], offset=LABS["b"][1])
        assert code == 0, failing(result)

        # A again while B runs, then B down: A unaffected.
        assert up(specs["a"], offset=LABS["a"][1]).code == 0
        assert down(specs["b"]).code == 0
        assert_nothing_left(specs["b"], LABS["b"][0])
        code, result = check(specs["a"], offset=LABS["a"][1])
        assert code == 0, failing(result)
    finally:
        for name, (prefix, _) in LABS.items():
            down(specs[name])
            assert_nothing_left(specs[name], prefix)


REAL_PORTS = (53, 80, 443, 6443, 8404, 9345)


def test_root_on_real_ports_beside_a_lab_on_its_port_offset(two_specs: dict[str, Path]) -> None:
    """The issue's machine: root's lab on the real ports, an unprivileged user's on
    lab.port_offset. The user's `up` and `down` run without any capability (NO_CAPABILITIES:
    uid 0 stripped of every privilege, as another uid could not run a python under /root)."""
    if os.geteuid() != 0:
        pytest.skip("the real ports need root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop the user's capabilities")
    # The user's processes really are unprivileged: a real port is refused to them.
    probe = subprocess.run(
        [*NO_CAPABILITIES, sys.executable, "-c",
         f"import socket; socket.socket().bind(('{LABS['b'][0]}10', 80))"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe
    (root_prefix, _), (user_prefix, user_offset) = LABS["a"], LABS["b"]
    taken = listening()
    if any(in_use("tcp", f"{root_prefix}10", port, taken) for port in REAL_PORTS):
        pytest.skip("a wildcard listener holds a real port: root's lab cannot use it")
    specs = two_specs
    try:
        run = up(specs["a"], offset=None)  # root: the real ports
        assert run.code == 0, run.err + run.out
        assert run.json()["port_offset"] == 0
        run = up(specs["b"], offset=user_offset, prefix=NO_CAPABILITIES)
        assert run.code == 0, run.err + run.out
        assert f"tcp {root_prefix}10:8404" in listening_sockets(root_prefix)
        assert f"tcp {user_prefix}10:{8404 + user_offset}" in listening_sockets(user_prefix)

        # The user's lab goes down; root's keeps passing every check.
        assert down(specs["b"], prefix=NO_CAPABILITIES).code == 0
        assert_nothing_left(specs["b"], user_prefix)
        code, result = check(specs["a"], offset=None)
        assert code == 0, failing(result)
    finally:
        for name, (prefix, _) in LABS.items():
            down(specs[name])
            assert_nothing_left(specs[name], prefix)
