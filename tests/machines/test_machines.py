"""The test machines themselves, live: three booted Debian machines reached over real SSH from
the workstation namespace, sudo as the pre-flight sees it, a firewall that is the machine's
own, a machine stopped and frozen. Every test leaves the shared machines as it found them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.support.machines import Machine, Testbed
from tests.support.machines.network import BRIDGE_ADDRESS
from tests.support.machines.rootfs import DISABLED_UNITS, PACKAGES

pytestmark = pytest.mark.root


def nodes(bed: Testbed) -> list[Machine]:
    return [bed.machine(n) for n in ("node-1", "node-2", "node-3")]


def test_three_machines_boot_to_a_clean_running_state(testbed: Testbed) -> None:
    machines = nodes(testbed)
    for machine in machines:
        assert machine.running
        state = machine.sh("systemctl is-system-running").stdout.strip()
        assert state == "running", (machine.name, state, machine.failed_units())
        assert machine.sh("readlink /proc/1/exe").stdout.strip().endswith("systemd")
        assert machine.sh("hostname").stdout.strip() == machine.name
    ids = {m.sh("cat /etc/machine-id").stdout.strip() for m in machines}
    assert len(ids) == 3
    fingerprints = {m.host_key_fingerprint() for m in machines}
    assert len(fingerprints) == 3  # no host key shared through the root filesystem


def test_packages_installed_and_their_services_left_off(testbed: Testbed) -> None:
    machine = testbed.machine("node-1")
    query = machine.sh(f"dpkg-query -W -f '${{Package}} ${{Status}}\\n' {' '.join(PACKAGES)}")
    installed = {
        line.split()[0]
        for line in query.stdout.splitlines()
        if line.endswith("install ok installed")
    }
    assert installed == set(PACKAGES), query.stdout + query.stderr
    for unit in DISABLED_UNITS:
        assert machine.sh(f"systemctl is-active {unit}").stdout.strip() == "inactive", unit
    listening = machine.sh("ss -Hltn").stdout
    for port in (2379, 2380, 6443, 9345, 10250, 80):
        assert f":{port} " not in listening, listening


def test_network_default_route_and_nothing_in_the_root_namespace(testbed: Testbed) -> None:
    machine = testbed.machine("node-2")
    route = machine.sh("ip -4 route show default").stdout
    assert f"default via {BRIDGE_ADDRESS} dev eth0" in route
    probe = f"import socket; socket.create_connection(({machine.address!r}, 22), timeout=3)"
    reach = testbed.workstation.run([sys.executable, "-c", probe])
    assert reach.returncode == 0, reach.stderr
    # Off the subnet, the machine's traffic goes to the bridge (where it ends: no route on).
    assert f"via {BRIDGE_ADDRESS} dev eth0" in machine.sh("ip route get 198.19.0.1").stdout
    # The harness made nothing in the root namespace: no route, address or link of its own.
    assert subprocess.run(["ip", "-4", "route", "show", "198.18.0.0/15"], capture_output=True,
                          text=True, check=True).stdout == ""  # fmt: skip
    assert "198.18." not in subprocess.run(["ip", "-4", "addr"], capture_output=True,
                                           text=True, check=True).stdout  # fmt: skip
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    assert testbed.prefix not in links.stdout


@pytest.mark.parametrize("user", ["root", "rke2ha", "nosudo"])
def test_ssh_from_the_workstation_with_strict_host_keys(testbed: Testbed, user: str) -> None:
    for machine in nodes(testbed):
        done = testbed.workstation.ssh(machine, "id -un; hostname", user=user)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [user, machine.hostname]


def test_strict_checking_refuses_an_unknown_or_wrong_host_key(
    testbed: Testbed, tmp_path: Path
) -> None:
    node1, node2, _ = nodes(testbed)
    empty = tmp_path / "empty"
    empty.write_text("")
    unknown = testbed.workstation.ssh(node1, "true", known_hosts=empty)
    assert unknown.returncode == 255
    assert "Host key verification failed" in unknown.stderr
    # node-2's keys recorded under node-1's address: a changed key, refused.
    wrong = tmp_path / "wrong"
    wrong.write_text(
        "".join(
            line.replace(node2.address, node1.address, 1) + "\n"
            for line in testbed.write_known_hosts(tmp_path / "n2", [node2]).read_text().splitlines()
        )
    )
    changed = testbed.workstation.ssh(node1, "true", known_hosts=wrong)
    assert changed.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr


def test_host_key_fingerprint_is_the_one_the_machine_serves(testbed: Testbed) -> None:
    machine = testbed.machine("node-3")
    scan = testbed.workstation.run(["ssh-keyscan", "-t", "ed25519", machine.address])
    assert scan.returncode == 0, scan.stderr
    served = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", "-"],
        input=scan.stdout, capture_output=True, text=True, check=True,
    ).stdout.split()[1]  # fmt: skip
    assert served == machine.host_key_fingerprint("ed25519")
    assert served.startswith("SHA256:")


def test_sudo_without_password_for_rke2ha_only(testbed: Testbed) -> None:
    machine = testbed.machine("node-1")
    ok = testbed.workstation.ssh(machine, "sudo -n id -un", user="rke2ha")
    assert (ok.returncode, ok.stdout.strip()) == (0, "root"), ok.stderr
    refused = testbed.workstation.ssh(machine, "sudo -n true", user="nosudo")
    assert refused.returncode == 1
    assert "a password is required" in refused.stderr


def _connects(source: Machine, target: Machine, port: int) -> bool:
    probe = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(s.connect_ex(({target.address!r},{port})))\n"
    )
    return source.sh("python3 -", input=probe, timeout=20).returncode == 0


def test_an_nftables_rule_in_one_machine_affects_only_that_machine(testbed: Testbed) -> None:
    node1, node2, node3 = nodes(testbed)
    for machine in (node2, node3):
        machine.sh("systemd-run --unit=probe-2380 python3 -m http.server 2380", check=True)
    try:
        deadline = time.monotonic() + 10
        while not (_connects(node1, node2, 2380) and _connects(node1, node3, 2380)):
            assert time.monotonic() < deadline, "the listeners on 2380 did not come up"
            time.sleep(0.2)
        node3.sh(
            "nft add table inet harness_test && "
            "nft add chain inet harness_test input '{ type filter hook input priority 0; }' && "
            "nft add rule inet harness_test input tcp dport 2380 drop",
            check=True,
        )
        assert not _connects(node1, node3, 2380)
        assert _connects(node1, node2, 2380)
        assert node2.sh("nft list tables").stdout.strip() == ""
        assert testbed.workstation.ssh(node3, "true").returncode == 0  # only 2380 is dropped
    finally:
        node3.sh("nft delete table inet harness_test")
        for machine in (node2, node3):
            machine.sh("systemctl stop probe-2380")
    assert _connects(node1, node3, 2380) is False  # listener gone, refused now
    assert node3.sh("nft list tables").stdout.strip() == ""


def test_a_stopped_machine_answers_nothing_and_starts_again_as_it_was(testbed: Testbed) -> None:
    machine = testbed.machine("node-3")
    machine.sh("echo kept > /root/marker", check=True)
    machine.stop()
    try:
        assert not machine.running
        started = time.monotonic()
        down = testbed.workstation.ssh(machine, "true")
        assert down.returncode == 255
        assert "No route to host" in down.stderr or "timed out" in down.stderr, down.stderr
        assert time.monotonic() - started < 15
    finally:
        machine.start()
    # Same host keys (the known_hosts written at setup still holds), same files.
    back = testbed.workstation.ssh(machine, "cat /root/marker")
    assert (back.returncode, back.stdout) == (0, "kept\n"), back.stderr
    machine.sh("rm /root/marker", check=True)


def test_a_frozen_machine_accepts_tcp_but_never_answers(testbed: Testbed) -> None:
    machine = testbed.machine("node-2")
    machine.freeze()
    try:
        assert machine.frozen
        started = time.monotonic()
        hung = testbed.workstation.run(
            testbed.workstation.ssh_argv(machine, "true", connect_timeout=2)
        )
        assert hung.returncode == 255
        assert "banner exchange" in hung.stderr, hung.stderr
        assert time.monotonic() - started < 10
    finally:
        machine.thaw()
    assert not machine.frozen
    assert testbed.workstation.ssh(machine, "true").returncode == 0


def test_spec_names_every_machine_and_its_ssh_fields_work(testbed: Testbed, tmp_path: Path) -> None:
    path = testbed.write_spec(tmp_path / "spec.yaml")
    doc = yaml.safe_load(path.read_text())
    assert [n["name"] for n in doc["nodes"]] == ["node-1", "node-2", "node-3"]
    ssh = doc["ssh"]
    for node in doc["nodes"]:
        assert node["address"] == testbed.machine(node["name"]).address
        done = testbed.workstation.run([
            "ssh", "-F", "none", "-i", ssh["identity_file"], "-p", str(ssh["port"]),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={ssh['known_hosts']}",
            f"{ssh['user']}@{node['ssh']['host']}", "sudo -n hostname",
        ])  # fmt: skip
        assert (done.returncode, done.stdout.strip()) == (0, node["name"]), done.stderr


def test_spec_without_ssh_blocks_is_valid_for_rke2ha_today(
    testbed: Testbed, tmp_path: Path
) -> None:
    path = testbed.write_spec(tmp_path / "spec.yaml", ssh=False)
    done = testbed.workstation.rke2ha("validate", "-f", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hostname_can_be_changed_and_put_back(testbed: Testbed) -> None:
    node1, node2, _ = nodes(testbed)
    node2.set_hostname(node1.hostname)
    try:
        assert testbed.workstation.ssh(node2, "hostname").stdout.strip() == "node-1"
        assert node2.sh("cat /etc/hostname").stdout.strip() == "node-1"
    finally:
        node2.set_hostname("node-2")
    assert testbed.workstation.ssh(node2, "hostname").stdout.strip() == "node-2"


def test_renewed_host_keys_are_refused_by_an_older_known_hosts(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("rekey") as machine:
        old = tmp_path / "known_hosts.old"
        old.write_text(testbed.known_hosts.read_text())
        before = machine.host_key_fingerprint()
        testbed.renew_host_keys(machine)
        assert machine.host_key_fingerprint() != before
        changed = testbed.workstation.ssh(machine, "true", known_hosts=old)
        assert changed.returncode == 255
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
        assert testbed.workstation.ssh(machine, "true").returncode == 0
        scan = testbed.workstation.run(["ssh-keyscan", "-t", "ed25519", machine.address])
        assert machine.host_keys.public_line("ed25519") in scan.stdout


def test_an_extra_machine_is_gone_after_its_block(testbed: Testbed) -> None:
    with testbed.extra_machine("twin", hostname="node-1") as twin:
        assert twin.name not in {"node-1", "node-2", "node-3"}
        assert testbed.workstation.ssh(twin, "hostname").stdout.strip() == "node-1"
        assert testbed.workstation.ssh(testbed.machine("node-1"), "hostname").stdout.strip() == (
            "node-1"
        )
        assert twin.address in testbed.known_hosts.read_text()
    assert set(testbed.machines) == {"node-1", "node-2", "node-3"}
    assert not twin.running
    assert (
        twin.netns
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert twin.address not in testbed.known_hosts.read_text()
    assert [n["name"] for n in testbed.spec()["nodes"]] == ["node-1", "node-2", "node-3"]


def test_a_unit_that_failed_at_boot_is_started_again_and_its_journal_kept(
    testbed: Testbed,
) -> None:
    machine = testbed.machine("node-3")
    unit = "rke2ha-fails-once.service"
    machine.sh(
        f"printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\n"
        f'ExecStart=/bin/sh -c "test -e /run/second || {{ touch /run/second; '
        f"echo first start refused; exit 1; }}\"\\n' > /run/systemd/system/{unit} && "
        f"systemctl daemon-reload && systemctl start {unit}"
    )
    notes_before = len(machine.boot_notes)
    try:
        assert machine.failed_units() == [unit]
        machine._retry_failed_units()
        note = machine.boot_notes[notes_before:]
        assert len(note) == 1 and unit in note[0] and "first start refused" in note[0], note
        assert note[0].endswith("started again: active")
        assert machine.boot_state == "running"
    finally:
        machine.sh(
            f"systemctl stop {unit}; rm -f /run/systemd/system/{unit} /run/second; "
            "systemctl daemon-reload; systemctl reset-failed"
        )
        del machine.boot_notes[notes_before:]
