"""`rke2ha preflight` against real machines (systemd-nspawn, real sshd and sudo), each
problem set up for real inside a machine and undone after; see tests/support/machines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.preflight_live.conftest import preflight, write_spec
from tests.support.machines import Machine, Testbed

pytestmark = pytest.mark.root

NODES = ("node-1", "node-2", "node-3")


def nodes(bed: Testbed) -> list[Machine]:
    return [bed.machine(n) for n in NODES]


def test_a_healthy_trio_passes(testbed: Testbed, tmp_path: Path) -> None:
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
    run = preflight(testbed, spec)
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["ok"] is True
    assert run.errors() == []
    for name in NODES:
        node = run.node(name)
        assert node["reached"] and node["user"] == "rke2ha"
        statuses = {c["id"]: c["status"] for c in node["checks"]}
        assert statuses["node.ssh"] == "pass" and statuses["node.sudo"] == "pass"
        assert statuses["node.systemd"] == "pass" and statuses["node.ports_free"] == "pass"
        assert node["facts"]["hostname"] == name
    # The machines share the host's kernel: its CPU count and unsynchronised clock warn;
    # rancher.rke2ha.test is published by `up` (dns manual here), so it does not resolve yet.
    assert {f["id"] for f in run.findings(severity="warning")} <= {
        "node.cpu", "node.memory", "node.time_sync", "node.resolve",
    }  # fmt: skip
    # Every server reached every other on every port (listeners started where none was).
    assert len(run.doc["pairs"]) == 3 * 2 * 6
    assert {p["result"] for p in run.doc["pairs"]} == {"open"}


def test_two_machines_with_the_same_hostname(testbed: Testbed, tmp_path: Path) -> None:
    node1, node2, _ = nodes(testbed)
    with testbed.extra_machine("twin", hostname="node-1") as twin:
        spec = write_spec(testbed, tmp_path / "spec.yaml", [node1, node2, twin])
        run = preflight(testbed, spec)
    assert run.code == 1
    assert sorted(run.errors()) == [("node.hostname_unique", "node-1"),
                                    ("node.hostname_unique", "twin")]  # fmt: skip
    (mine,) = run.findings("node.hostname_unique", "error")[1:]
    assert mine["value"] == "node-1" and "node-1" in mine["message"]


def _wait_listening(machine: Machine, port: int) -> None:
    deadline = time.monotonic() + 10
    while f":{port} " not in machine.sh("ss -Hltn").stdout:
        assert time.monotonic() < deadline, f"nothing listens on {port} in {machine.name}"
        time.sleep(0.1)


def test_a_listener_already_on_6443(testbed: Testbed, tmp_path: Path) -> None:
    node2 = testbed.machine("node-2")
    node2.sh("systemd-run --unit=squatter-6443 python3 -m http.server 6443", check=True)
    try:
        _wait_listening(node2, 6443)
        spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
        run = preflight(testbed, spec, "--node", "node-2")
    finally:
        node2.sh("systemctl stop squatter-6443")
    assert run.code == 1
    assert run.errors() == [("node.ports_free", "node-2")]
    (finding,) = run.findings("node.ports_free")
    assert finding["value"].startswith("TCP 6443 held by python3 (pid ")
    assert finding["path"] == "nodes[1]" and finding["source"].startswith("RKE2 docs")
    assert [n["node"] for n in run.doc["nodes"]] == ["node-2"]


def test_swap_on_warns(testbed: Testbed, tmp_path: Path) -> None:
    # Swap is the host kernel's (the machines share it) and this shared box has none, so
    # node-1 gets a /proc/swaps in the kernel's format bind-mounted over its own.
    node1 = testbed.machine("node-1")
    node1.sh(
        "printf 'Filename\\t\\t\\t\\tType\\t\\tSize\\t\\tUsed\\t\\tPriority\\n"
        "/swapfile                               file\\t\\t2097148\\t\\t0\\t\\t-2\\n' "
        "> /run/fake-swaps && mount --bind /run/fake-swaps /proc/swaps",
        check=True,
    )
    try:
        spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
        run = preflight(testbed, spec, "--node", "node-1")
    finally:
        node1.sh("umount /proc/swaps; rm -f /run/fake-swaps")
    assert node1.sh("cat /proc/swaps").stdout.count("\n") == 1  # undone
    assert run.code == 0  # a warning only
    (finding,) = run.findings("node.swap")
    assert (finding["severity"], finding["node"], finding["value"]) == (
        "warning", "node-1", "/swapfile 2.0 GiB",
    )  # fmt: skip


def test_a_user_without_passwordless_sudo(testbed: Testbed, tmp_path: Path) -> None:
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed), user="nosudo")
    started = time.monotonic()
    run = preflight(testbed, spec)
    assert time.monotonic() - started < 30  # the password prompt was never waited on
    assert run.code == 1
    assert sorted(run.errors()) == [("node.sudo", n) for n in NODES]
    (first, *_) = run.findings("node.sudo")
    assert first["value"] == "nosudo: sudo: a password is required"
    assert "NOPASSWD" in first["fix"]
    # The other checks still ran, on what an unprivileged user can read.
    assert run.node("node-1")["facts"]["pid1"] == "systemd"


def test_host_keys_unknown_accepted_with_the_flag_changed_refused(
    testbed: Testbed, tmp_path: Path
) -> None:
    node3 = testbed.machine("node-3")
    known = tmp_path / "known_hosts"
    known.write_text("")
    spec = write_spec(testbed, tmp_path / "spec.yaml", [node3], known_hosts=known)
    refused = preflight(testbed, spec)
    assert refused.code == 1 and refused.errors() == [("node.ssh", "node-3")]
    (finding,) = refused.findings("node.ssh")
    assert finding["value"] == "host_key_unknown"
    served = {node3.host_key_fingerprint(k) for k in ("ed25519", "ecdsa")}
    assert any(fp in finding["message"] for fp in served), finding["message"]
    assert "--accept-new-host-keys" in finding["fix"]
    assert known.read_text() == ""

    accepted = preflight(testbed, spec, "--accept-new-host-keys")
    assert accepted.code == 0, accepted.stdout
    recorded = known.read_text()
    assert recorded.startswith(node3.address + " ") and recorded.count("\n") == 1
    assert preflight(testbed, spec).code == 0  # now known, no flag needed

    testbed.renew_host_keys(node3)  # reinstalled: new keys; our copy still has the old one
    changed = preflight(testbed, spec, "--accept-new-host-keys")
    assert changed.code == 1
    (finding,) = changed.findings("node.ssh")
    assert finding["value"] == "host_key_changed"
    assert f"line 1 of {known}" in finding["message"]
    assert "remove line 1" in finding["fix"]
    assert known.read_text() == recorded  # nothing recorded over it


def test_a_stopped_machine_is_one_failure_and_the_others_are_checked(
    testbed: Testbed, tmp_path: Path
) -> None:
    node1, node2, _ = nodes(testbed)
    with testbed.extra_machine("doomed") as doomed:
        spec = write_spec(testbed, tmp_path / "spec.yaml", [node1, node2, doomed])
        doomed.stop()
        started = time.monotonic()
        run = preflight(testbed, spec)
        seconds = time.monotonic() - started
    assert run.code == 1
    assert run.errors() == [("node.ssh", "doomed")]
    (finding,) = run.findings("node.ssh")
    assert finding["value"] in ("unreachable", "timeout")
    assert run.node("node-1")["facts"] and run.node("node-2")["facts"]
    assert seconds < 8 + 10 + 10, seconds  # connect_timeout + command_timeout + start-up


def test_a_frozen_machine_times_out_without_a_hang(testbed: Testbed, tmp_path: Path) -> None:
    node1, node2, node3 = nodes(testbed)
    spec = write_spec(testbed, tmp_path / "spec.yaml", [node1, node2, node3],
                      ssh={"connect_timeout": "4s"})  # fmt: skip
    node3.freeze()
    try:
        started = time.monotonic()
        run = preflight(testbed, spec)
        seconds = time.monotonic() - started
    finally:
        node3.thaw()
    assert run.errors() == [("node.ssh", "node-3")]
    assert run.findings("node.ssh")[0]["value"] == "timeout"
    assert seconds < 4 + 10 + 10, seconds


def test_plan_stops_on_preflight_errors_before_touching_anything(
    testbed: Testbed, tmp_path: Path
) -> None:
    spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed), user="nosudo")
    done = testbed.workstation.rke2ha("plan", "-f", str(spec))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pre-flight found 3 error(s)" in done.stderr and "nothing was changed" in done.stderr
    assert "node.sudo" in done.stdout
    assert not (tmp_path / ".rke2ha").exists()  # no state, no lock: nothing was read or made
    healthy = write_spec(testbed, tmp_path / "ok.yaml", nodes(testbed))
    done = testbed.workstation.rke2ha("plan", "-f", str(healthy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pre-flight: 3 nodes ready" in done.stdout


def test_a_clock_five_seconds_ahead(testbed: Testbed, tmp_path: Path) -> None:
    # The machines share the host's clock, so node-2's `date` (first on the login PATH) is
    # made to answer 5 s ahead: the reading over SSH, the median and the finding are real.
    node2 = testbed.machine("node-2")
    wrapper = "#!/bin/sh\nexec python3 -c \"import time; print('%.9f' % (time.time() + 5))\"\n"
    node2.sh("cat > /usr/local/bin/date && chmod 755 /usr/local/bin/date", input=wrapper,
             check=True)  # fmt: skip
    try:
        ahead = testbed.workstation.ssh(node2, "date +%s.%N", user="rke2ha").stdout
        assert float(ahead) - time.time() > 4
        spec = write_spec(testbed, tmp_path / "spec.yaml", nodes(testbed))
        run = preflight(testbed, spec)
    finally:
        node2.sh("rm -f /usr/local/bin/date")
    assert run.errors() == [("node.clock_skew", "node-2")]
    (finding,) = run.findings("node.clock_skew")
    assert 4.5 < float(finding["value"].rstrip("s")) < 5.5
    assert "ahead of the other nodes'" in finding["message"]
