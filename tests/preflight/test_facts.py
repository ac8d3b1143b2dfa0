"""The gather script's sections parsed without SSH, from output a test machine (Debian 12
booted by systemd-nspawn) really printed, and from that output with one section changed
the way another machine would print it."""

from __future__ import annotations

from pathlib import Path

from rke2ha.preflight import gather, parsers
from rke2ha.preflight.facts import from_output

REAL = (Path(__file__).parent / "data" / "debian12-nspawn.txt").read_text()


def with_section(name: str, text: str, output: str = REAL) -> str:
    """`output` with section `name` replaced by `text`."""
    sections = gather.split(output)
    sections[name] = text
    return "".join(f"{gather.MARK}{k}\n{v}\n" for k, v in sections.items())


def test_every_section_of_the_script_is_in_the_real_output() -> None:
    names = [line.split()[2].rstrip("'") for line in gather.script().splitlines()
             if line.startswith("echo '@@rke2ha")]  # fmt: skip
    assert len(names) == 17
    assert list(gather.split(REAL)) == names


def test_real_debian_machine() -> None:
    facts = from_output(REAL)
    assert facts.arch == "x86_64"
    assert facts.cpus == 2
    assert facts.memory_bytes == 24683772 * 1024
    assert facts.hostname == "node-1"
    assert facts.os == "Debian GNU/Linux 12 (bookworm)"
    assert facts.pid1 == "systemd"
    assert [(x.proto, x.address, x.port, x.process) for x in facts.listeners] == [
        ("tcp", "0.0.0.0", 22, "sshd (pid 39)"),
        ("tcp", "[::]", 22, "sshd (pid 39)"),
    ]
    assert not facts.unit("firewalld").installed
    assert not facts.unit("NetworkManager").will_start
    assert facts.nm_unmanaged == []
    assert facts.selinux == "disabled" and not facts.rke2_selinux
    assert not facts.apparmor and facts.apparmor_parser == ""
    assert facts.time_synchronized is False
    assert facts.swaps == []
    assert facts.default_routes == ["default via 198.18.0.1 dev eth0"]
    assert facts.python == "/usr/bin/python3"


def test_listeners_of_every_address_form_and_udp() -> None:
    text = (
        'tcp LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=5,fd=14))\n'
        'tcp LISTEN 0 5 *:6443 *:* users:(("python3",pid=901,fd=3))\n'
        "tcp LISTEN 0 128 [::ffff:10.0.0.1]:2380 [::]:*\n"
        'udp UNCONN 0 0 0.0.0.0:8472 0.0.0.0:* users:(("python3",pid=77,fd=3))\n'
        "garbage\n"
    )
    assert [(x.proto, x.address, x.port, x.process) for x in parsers.listeners(text)] == [
        ("tcp", "127.0.0.53%lo", 53, "systemd-resolve (pid 5)"),
        ("tcp", "*", 6443, "python3 (pid 901)"),
        ("tcp", "[::ffff:10.0.0.1]", 2380, ""),
        ("udp", "0.0.0.0", 8472, "python3 (pid 77)"),
    ]


def test_proc_swaps_in_the_kernels_format() -> None:
    # mm/swapfile.c swap_show(): header, then name, type, size and used in KiB, priority.
    text = (
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/swapfile                               file\t\t2097148\t\t0\t\t-2\n"
        "/dev/dm-1                               partition\t8388604\t\t1024\t\t-3\n"
    )
    assert [(s.name, s.kind, s.size_kib, s.used_kib) for s in parsers.swaps(text)] == [
        ("/swapfile", "file", 2097148, 0),
        ("/dev/dm-1", "partition", 8388604, 1024),
    ]
    assert from_output(with_section("swaps", text)).swaps[0].name == "/swapfile"


def test_units_networkmanager_conf_and_security_modules() -> None:
    facts = from_output(
        with_section(
            "units",
            "firewalld active enabled\nNetworkManager active enabled\n"
            "nm-cloud-setup.service inactive enabled\nnm-cloud-setup.timer active "
            "enabled",
        )
    )
    assert facts.unit("firewalld").running and facts.unit("nm-cloud-setup.service").will_start
    conf = (
        "[main]\nplugins=keyfile\n[keyfile]\nunmanaged-devices=interface-name:eth9\n"
        "# rke2-canal.conf\n[keyfile]\n"
        "unmanaged-devices=interface-name:cali*;interface-name:flannel*\n"
    )
    assert parsers.nm_unmanaged(conf) == ["interface-name:cali*", "interface-name:flannel*"]
    assert parsers.nm_unmanaged("[main]\nunmanaged-devices=x\n") == []
    assert parsers.selinux("1\n") == "enforcing" and parsers.selinux("0") == "permissive"
    assert from_output(with_section("rke2_selinux", "rke2-selinux-0.18-1.el9.noarch")).rke2_selinux
    assert from_output(with_section("rke2_selinux", "package rke2-selinux is not installed"))\
        .rke2_selinux is False  # fmt: skip
    facts = from_output(with_section("apparmor", "Y"))
    assert facts.apparmor and facts.apparmor_parser == ""
    assert from_output(with_section("timesync", "yes")).time_synchronized is True
    assert from_output(with_section("timesync", "")).time_synchronized is None


def test_missing_sections_read_as_not_there() -> None:
    facts = from_output("")
    assert (facts.cpus, facts.memory_bytes, facts.pid1, facts.default_routes) == (
        None, None, "", [],
    )  # fmt: skip
    assert parsers.os_release('NAME="Alpine"\nVERSION_ID=3.20\n') == "Alpine 3.20"
