"""known_hosts judged without I/O, against files OpenSSH's own tools wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rke2ha.ssh import knownhosts


def _keypair(tmp_path: Path, name: str) -> tuple[str, str]:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    kind, data = path.with_suffix(".pub").read_text().split()[:2]
    return kind, data


def test_known_unknown_changed_and_the_line_to_remove(tmp_path: Path) -> None:
    kind, old = _keypair(tmp_path, "old")
    _, new = _keypair(tmp_path, "new")
    text = f"# comment\n\nother.example {kind} {new}\n198.18.0.11 {kind} {old}\n"
    entries = knownhosts.parse(text)
    assert knownhosts.judge(entries, "198.18.0.11", kind, old).verdict == "known"
    changed = knownhosts.judge(entries, "198.18.0.11", kind, new)
    assert (changed.verdict, changed.lines) == ("changed", (4,))
    assert knownhosts.judge(entries, "198.18.0.12", kind, old).verdict == "unknown"
    # Another port is another host to ssh: [host]:port.
    assert knownhosts.judge(entries, "[198.18.0.11]:2222", kind, old).verdict == "unknown"


def test_hashed_names_as_ssh_keygen_writes_them(tmp_path: Path) -> None:
    kind, data = _keypair(tmp_path, "k")
    path = tmp_path / "known_hosts"
    path.write_text(f"node-1.example,198.18.0.11 {kind} {data}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    hashed = path.read_text()
    assert "198.18.0.11" not in hashed and hashed.startswith("|1|")
    entries = knownhosts.parse(hashed)
    assert knownhosts.judge(entries, "198.18.0.11", kind, data).verdict == "known"
    assert knownhosts.judge(entries, "node-1.example", kind, data).verdict == "known"
    assert knownhosts.judge(entries, "198.18.0.12", kind, data).verdict == "unknown"


def test_patterns_negation_markers_and_other_types(tmp_path: Path) -> None:
    kind, data = _keypair(tmp_path, "k")
    entries = knownhosts.parse(
        f"*.example,!bad.example {kind} {data}\n"
        f"@cert-authority * {kind} {data}\n"
        f"ecdsa.test ecdsa-sha2-nistp256 AAAA\n"
    )
    assert knownhosts.judge(entries, "a.example", kind, data).verdict == "known"
    assert knownhosts.judge(entries, "bad.example", kind, data).verdict == "unknown"
    other = knownhosts.judge(entries, "ecdsa.test", kind, data)
    assert (other.verdict, other.other_types) == ("unknown", ("ecdsa-sha2-nistp256",))
    # A revoked key is refused whichever host serves it.
    entries.append(knownhosts.Entry(9, ("x",), kind, data, "@revoked"))
    assert knownhosts.judge(entries, "a.example", kind, data).verdict == "revoked"


def test_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path) -> None:
    _, data = _keypair(tmp_path, "k")
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")],
        check=True, capture_output=True, text=True,
    ).stdout.split()[1]  # fmt: skip
    assert knownhosts.fingerprint(data) == printed


@pytest.mark.parametrize(("host", "port", "name"), [("h", 22, "h"), ("h", 2222, "[h]:2222")])
def test_host_name(host: str, port: int, name: str) -> None:
    assert knownhosts.host_name(host, port) == name
